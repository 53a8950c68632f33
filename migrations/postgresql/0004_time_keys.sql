-- @name: time_keys
-- @description: Nothing on PostgreSQL: timestamp, date and boolean columns have native types there, so filters and ordering already compare instants, dates and truth values (SQLite's set indexes a comparison-key expression instead).
--
-- The step exists so that both dialects of the core set have the same versions (a database
-- copied between backends, `hive-store migrate --list`, say the same thing).
SELECT 'native types compare by meaning';

-- @down
SELECT 'nothing to undo';
