-- @name: hive_runner_record
-- @description: Nothing on PostgreSQL: Hive's own migration record (schema_migrations) only matters in the SQLite files the old Hive apps open.
--
-- The step exists so that both dialects of the core set have the same versions (a database
-- copied between backends, `hive-store migrate --list`, say the same thing). The old Hive apps
-- never open a PostgreSQL database; `hive-store copy` to a SQLite file gives that file the
-- SQLite set's 0003 (the record the old apps read).
SELECT 'schema_migrations is only kept in SQLite files';

-- @down
SELECT 'nothing to undo';
