"""The D1 mirror's migration files (package data: ``*.sql``)."""
