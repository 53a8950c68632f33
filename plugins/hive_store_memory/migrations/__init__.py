"""The memory plugin's migration files (package data: ``*.sql``)."""
