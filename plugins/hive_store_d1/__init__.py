"""hive-store plugin: mirroring to Cloudflare D1 (work in progress)."""
