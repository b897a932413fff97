from followerwatch.cli import main

main()
