from followerwatch.cli.main import main

main()
