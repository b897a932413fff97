"""followerwatch: watch follower counts, store them in InfluxDB, alert on thresholds."""

__version__ = "0.1.0"
