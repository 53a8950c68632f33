-- @name: memory
-- @description: full-text index of the knowledge base (contentless FTS5 kept in step by triggers), themes
--
-- Documents: every row of knowledge_conversations, curator_truths, consensus_facts and messages
-- has one row in hive_store_memory_docs. Its doc_id (an explicit INTEGER PRIMARY KEY, never
-- reused; VACUUM renumbers the implicit rowids of the tables' TEXT keys, never this) is the
-- document's rowid in the FTS5 index. The index is contentless: the text stays in the Hive
-- tables. A document has a title (weighted 2 in bm25) and a body:
--   knowledge_conversations  question                  final_answer (+ source_of_truth if different)
--   curator_truths           topic_summary (or '')     curator_output
--   consensus_facts          source_question           content
--   messages                 ''                        content
-- The same expressions are in hive_store_memory/index.py (SOURCES: flush, reindex, snippets).
--
-- The triggers below keep the documents exact and record, per document, what the index must
-- do in hive_store_memory_pending: forget the text it indexed (indexed = 1 with that title and
-- body) and/or index the row's current text (reindex = 1). The plugin applies pending in a
-- few set-based statements (hive_store_memory/index.py: flush) inside the same transaction,
-- just before it commits, and before any search. Writing FTS5 from the triggers themselves
-- would cost ~3x as much: FTS5 flushes its buffer at every statement savepoint, so each row of
-- a multi-row insert would become its own index segment. Only built-in SQL functions are used,
-- so another program writing these tables (the Hive apps) keeps the documents and pending
-- exact too; its rows are indexed on hive-store's next write or search.

CREATE TABLE hive_store_memory_docs (
    doc_id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,                        -- the source table
    key NOT NULL,                              -- its primary key, as stored (TEXT or INTEGER)
    conversation_id TEXT,
    at REAL,                                   -- julianday(created_at), messages: timestamp
    UNIQUE (kind, key)
);
CREATE INDEX hive_store_memory_docs_kind_at ON hive_store_memory_docs (kind, at);

CREATE TABLE hive_store_memory_pending (
    doc_id INTEGER PRIMARY KEY,
    indexed INTEGER NOT NULL,                  -- 1: the index holds (title, body): forget them
    title TEXT,
    body TEXT,
    reindex INTEGER NOT NULL                   -- 1: index the row's current text
);

-- What the index holds for rows an INSERT may replace: INSERT OR REPLACE (Hive writes
-- curator_truths that way) deletes them without a DELETE trigger, and a contentless index
-- forgets a row only when given the text it indexed. The BEFORE INSERT triggers fill it; the
-- AFTER INSERT triggers use the rows the insert really replaced. An insert that replaces
-- nothing (plain, OR IGNORE, an upsert) may leave a row here: it is refreshed before any use.
CREATE TABLE hive_store_memory_stash (
    doc_id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    body TEXT NOT NULL
);

CREATE VIRTUAL TABLE hive_store_memory_fts USING fts5(
    title, body, content = '', tokenize = 'porter unicode61 remove_diacritics 2'
);
INSERT INTO hive_store_memory_fts (hive_store_memory_fts, rank) VALUES ('rank', 'bm25(2.0, 1.0)');

-- Themes (thematic clustering; see hive_store_memory/clustering.py).
CREATE TABLE hive_store_memory_themes (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    keywords TEXT NOT NULL DEFAULT '[]',   -- JSON: the top terms, heaviest first
    centroid TEXT NOT NULL,                -- JSON: {term: weight} (TF-IDF) or [float, ...] (embedder)
    terms TEXT NOT NULL DEFAULT '{}',      -- JSON: {term: weight}, the TF-IDF centroid (keywords)
    member_count INTEGER NOT NULL DEFAULT 0,
    last_activity TEXT,                    -- time of the newest member
    created_at TEXT NOT NULL,              -- time of the founding member
    updated_at TEXT NOT NULL
);

CREATE TABLE hive_store_memory_members (
    doc_id INTEGER PRIMARY KEY,            -- a knowledge_conversations document
    theme_id INTEGER NOT NULL,
    score REAL NOT NULL,                   -- similarity to the theme when it joined
    assigned_at TEXT NOT NULL
);
CREATE INDEX hive_store_memory_members_theme ON hive_store_memory_members (theme_id, score DESC);

-- Document frequencies of the clustering vocabulary (TF-IDF), and settings/counters.
CREATE TABLE hive_store_memory_terms (term TEXT PRIMARY KEY, df INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE hive_store_memory_meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
INSERT INTO hive_store_memory_meta (key, value) VALUES ('generation', 0), ('documents', 0);

CREATE TRIGGER hive_store_memory_docs_ad AFTER DELETE ON hive_store_memory_docs BEGIN
    DELETE FROM hive_store_memory_members WHERE doc_id = old.doc_id;
    DELETE FROM hive_store_memory_stash WHERE doc_id = old.doc_id;
END;

CREATE TRIGGER hive_store_memory_members_ad AFTER DELETE ON hive_store_memory_members BEGIN
    UPDATE hive_store_memory_themes SET member_count = member_count - 1 WHERE id = old.theme_id;
    DELETE FROM hive_store_memory_themes WHERE id = old.theme_id AND member_count <= 0;
    UPDATE hive_store_memory_meta SET value = value + 1 WHERE key = 'generation';
END;

-- Four triggers per source table: BEFORE INSERT stashes what the index holds for the rows the
-- insert may replace; AFTER INSERT forgets the rows it replaced and registers the new one;
-- AFTER UPDATE (of the indexed columns) and AFTER DELETE forget the old text and re-index.

-- knowledge_conversations -------------------------------------------------------------------
CREATE TRIGGER hive_store_memory_kc_bi BEFORE INSERT ON knowledge_conversations BEGIN
    INSERT OR REPLACE INTO hive_store_memory_stash (doc_id, title, body)
    SELECT d.doc_id, t.question,
           CASE WHEN t.source_of_truth = t.final_answer THEN t.final_answer
                ELSE t.final_answer || char(10) || t.source_of_truth
           END
    FROM knowledge_conversations AS t
    JOIN hive_store_memory_docs AS d ON d.kind = 'knowledge_conversations' AND d.key = t.id
    WHERE t.id = new.id;
END;

CREATE TRIGGER hive_store_memory_kc_ai AFTER INSERT ON knowledge_conversations BEGIN
    -- rows this insert replaced: forget what the index holds for them
    INSERT INTO hive_store_memory_pending (doc_id, indexed, title, body, reindex)
    SELECT s.doc_id, 1, s.title, s.body, 0
    FROM hive_store_memory_stash AS s JOIN hive_store_memory_docs AS d ON d.doc_id = s.doc_id
    WHERE d.kind = 'knowledge_conversations' AND d.key = new.id
      AND NOT EXISTS (SELECT 1 FROM hive_store_memory_pending AS p WHERE p.doc_id = s.doc_id);
    UPDATE hive_store_memory_pending SET reindex = 0
    WHERE doc_id IN (SELECT d.doc_id FROM hive_store_memory_stash AS s JOIN hive_store_memory_docs AS d ON d.doc_id = s.doc_id
                     WHERE d.kind = 'knowledge_conversations' AND d.key = new.id);
    DELETE FROM hive_store_memory_docs
    WHERE doc_id IN (SELECT d.doc_id FROM hive_store_memory_docs AS d WHERE d.kind = 'knowledge_conversations' AND d.key = new.id
                     UNION ALL
                     SELECT d.doc_id FROM hive_store_memory_stash AS s JOIN hive_store_memory_docs AS d ON d.doc_id = s.doc_id
                     WHERE d.kind = 'knowledge_conversations' AND d.key = new.id);
    -- the new row
    INSERT INTO hive_store_memory_docs (kind, key, conversation_id, at)
    VALUES ('knowledge_conversations', new.id, new.conversation_id, julianday(new.created_at));
    INSERT INTO hive_store_memory_pending (doc_id, indexed, title, body, reindex)
    VALUES (last_insert_rowid(), 0, NULL, NULL, 1);
END;

CREATE TRIGGER hive_store_memory_kc_au
AFTER UPDATE OF id, conversation_id, question, final_answer, source_of_truth, created_at ON knowledge_conversations BEGIN
    INSERT INTO hive_store_memory_pending (doc_id, indexed, title, body, reindex)
    SELECT d.doc_id, 1, old.question,
           CASE WHEN old.source_of_truth = old.final_answer THEN old.final_answer
                ELSE old.final_answer || char(10) || old.source_of_truth
           END, 1
    FROM hive_store_memory_docs AS d WHERE d.kind = 'knowledge_conversations' AND d.key = old.id
      AND NOT EXISTS (SELECT 1 FROM hive_store_memory_pending AS p WHERE p.doc_id = d.doc_id);
    UPDATE hive_store_memory_docs
    SET key = new.id, conversation_id = new.conversation_id, at = julianday(new.created_at)
    WHERE kind = 'knowledge_conversations' AND key = old.id;
    INSERT INTO hive_store_memory_docs (kind, key, conversation_id, at)
    SELECT 'knowledge_conversations', new.id, new.conversation_id, julianday(new.created_at)
    WHERE NOT EXISTS (SELECT 1 FROM hive_store_memory_docs WHERE kind = 'knowledge_conversations' AND key = new.id);
    INSERT INTO hive_store_memory_pending (doc_id, indexed, title, body, reindex)
    SELECT d.doc_id, 0, NULL, NULL, 1
    FROM hive_store_memory_docs AS d WHERE d.kind = 'knowledge_conversations' AND d.key = new.id
      AND NOT EXISTS (SELECT 1 FROM hive_store_memory_pending AS p WHERE p.doc_id = d.doc_id);
END;

CREATE TRIGGER hive_store_memory_kc_ad AFTER DELETE ON knowledge_conversations BEGIN
    INSERT INTO hive_store_memory_pending (doc_id, indexed, title, body, reindex)
    SELECT d.doc_id, 1, old.question,
           CASE WHEN old.source_of_truth = old.final_answer THEN old.final_answer
                ELSE old.final_answer || char(10) || old.source_of_truth
           END, 0
    FROM hive_store_memory_docs AS d WHERE d.kind = 'knowledge_conversations' AND d.key = old.id
      AND NOT EXISTS (SELECT 1 FROM hive_store_memory_pending AS p WHERE p.doc_id = d.doc_id);
    UPDATE hive_store_memory_pending SET reindex = 0
    WHERE doc_id IN (SELECT doc_id FROM hive_store_memory_docs WHERE kind = 'knowledge_conversations' AND key = old.id);
    DELETE FROM hive_store_memory_docs WHERE kind = 'knowledge_conversations' AND key = old.id;
END;

-- curator_truths ----------------------------------------------------------------------------
CREATE TRIGGER hive_store_memory_ct_bi BEFORE INSERT ON curator_truths BEGIN
    INSERT OR REPLACE INTO hive_store_memory_stash (doc_id, title, body)
    SELECT d.doc_id, coalesce(t.topic_summary, ''),
           t.curator_output
    FROM curator_truths AS t
    JOIN hive_store_memory_docs AS d ON d.kind = 'curator_truths' AND d.key = t.id
    WHERE t.id = new.id OR t.conversation_id = new.conversation_id;
END;

CREATE TRIGGER hive_store_memory_ct_ai AFTER INSERT ON curator_truths BEGIN
    -- rows this insert replaced: forget what the index holds for them
    INSERT INTO hive_store_memory_pending (doc_id, indexed, title, body, reindex)
    SELECT s.doc_id, 1, s.title, s.body, 0
    FROM hive_store_memory_stash AS s JOIN hive_store_memory_docs AS d ON d.doc_id = s.doc_id
    WHERE d.kind = 'curator_truths' AND (d.key = new.id OR NOT EXISTS (SELECT 1 FROM curator_truths WHERE id = d.key))
      AND NOT EXISTS (SELECT 1 FROM hive_store_memory_pending AS p WHERE p.doc_id = s.doc_id);
    UPDATE hive_store_memory_pending SET reindex = 0
    WHERE doc_id IN (SELECT d.doc_id FROM hive_store_memory_stash AS s JOIN hive_store_memory_docs AS d ON d.doc_id = s.doc_id
                     WHERE d.kind = 'curator_truths' AND (d.key = new.id OR NOT EXISTS (SELECT 1 FROM curator_truths WHERE id = d.key)));
    DELETE FROM hive_store_memory_docs
    WHERE doc_id IN (SELECT d.doc_id FROM hive_store_memory_docs AS d WHERE d.kind = 'curator_truths' AND d.key = new.id
                     UNION ALL
                     SELECT d.doc_id FROM hive_store_memory_stash AS s JOIN hive_store_memory_docs AS d ON d.doc_id = s.doc_id
                     WHERE d.kind = 'curator_truths' AND (d.key = new.id OR NOT EXISTS (SELECT 1 FROM curator_truths WHERE id = d.key)));
    -- the new row
    INSERT INTO hive_store_memory_docs (kind, key, conversation_id, at)
    VALUES ('curator_truths', new.id, new.conversation_id, julianday(new.created_at));
    INSERT INTO hive_store_memory_pending (doc_id, indexed, title, body, reindex)
    VALUES (last_insert_rowid(), 0, NULL, NULL, 1);
END;

CREATE TRIGGER hive_store_memory_ct_au
AFTER UPDATE OF id, conversation_id, curator_output, topic_summary, created_at ON curator_truths BEGIN
    INSERT INTO hive_store_memory_pending (doc_id, indexed, title, body, reindex)
    SELECT d.doc_id, 1, coalesce(old.topic_summary, ''),
           old.curator_output, 1
    FROM hive_store_memory_docs AS d WHERE d.kind = 'curator_truths' AND d.key = old.id
      AND NOT EXISTS (SELECT 1 FROM hive_store_memory_pending AS p WHERE p.doc_id = d.doc_id);
    UPDATE hive_store_memory_docs
    SET key = new.id, conversation_id = new.conversation_id, at = julianday(new.created_at)
    WHERE kind = 'curator_truths' AND key = old.id;
    INSERT INTO hive_store_memory_docs (kind, key, conversation_id, at)
    SELECT 'curator_truths', new.id, new.conversation_id, julianday(new.created_at)
    WHERE NOT EXISTS (SELECT 1 FROM hive_store_memory_docs WHERE kind = 'curator_truths' AND key = new.id);
    INSERT INTO hive_store_memory_pending (doc_id, indexed, title, body, reindex)
    SELECT d.doc_id, 0, NULL, NULL, 1
    FROM hive_store_memory_docs AS d WHERE d.kind = 'curator_truths' AND d.key = new.id
      AND NOT EXISTS (SELECT 1 FROM hive_store_memory_pending AS p WHERE p.doc_id = d.doc_id);
END;

CREATE TRIGGER hive_store_memory_ct_ad AFTER DELETE ON curator_truths BEGIN
    INSERT INTO hive_store_memory_pending (doc_id, indexed, title, body, reindex)
    SELECT d.doc_id, 1, coalesce(old.topic_summary, ''),
           old.curator_output, 0
    FROM hive_store_memory_docs AS d WHERE d.kind = 'curator_truths' AND d.key = old.id
      AND NOT EXISTS (SELECT 1 FROM hive_store_memory_pending AS p WHERE p.doc_id = d.doc_id);
    UPDATE hive_store_memory_pending SET reindex = 0
    WHERE doc_id IN (SELECT doc_id FROM hive_store_memory_docs WHERE kind = 'curator_truths' AND key = old.id);
    DELETE FROM hive_store_memory_docs WHERE kind = 'curator_truths' AND key = old.id;
END;

-- consensus_facts ---------------------------------------------------------------------------
CREATE TRIGGER hive_store_memory_cf_bi BEFORE INSERT ON consensus_facts BEGIN
    INSERT OR REPLACE INTO hive_store_memory_stash (doc_id, title, body)
    SELECT d.doc_id, t.source_question,
           t.content
    FROM consensus_facts AS t
    JOIN hive_store_memory_docs AS d ON d.kind = 'consensus_facts' AND d.key = t.id
    WHERE t.id = new.id OR t.semantic_fingerprint = new.semantic_fingerprint;
END;

CREATE TRIGGER hive_store_memory_cf_ai AFTER INSERT ON consensus_facts BEGIN
    -- rows this insert replaced: forget what the index holds for them
    INSERT INTO hive_store_memory_pending (doc_id, indexed, title, body, reindex)
    SELECT s.doc_id, 1, s.title, s.body, 0
    FROM hive_store_memory_stash AS s JOIN hive_store_memory_docs AS d ON d.doc_id = s.doc_id
    WHERE d.kind = 'consensus_facts' AND (d.key = new.id OR NOT EXISTS (SELECT 1 FROM consensus_facts WHERE id = d.key))
      AND NOT EXISTS (SELECT 1 FROM hive_store_memory_pending AS p WHERE p.doc_id = s.doc_id);
    UPDATE hive_store_memory_pending SET reindex = 0
    WHERE doc_id IN (SELECT d.doc_id FROM hive_store_memory_stash AS s JOIN hive_store_memory_docs AS d ON d.doc_id = s.doc_id
                     WHERE d.kind = 'consensus_facts' AND (d.key = new.id OR NOT EXISTS (SELECT 1 FROM consensus_facts WHERE id = d.key)));
    DELETE FROM hive_store_memory_docs
    WHERE doc_id IN (SELECT d.doc_id FROM hive_store_memory_docs AS d WHERE d.kind = 'consensus_facts' AND d.key = new.id
                     UNION ALL
                     SELECT d.doc_id FROM hive_store_memory_stash AS s JOIN hive_store_memory_docs AS d ON d.doc_id = s.doc_id
                     WHERE d.kind = 'consensus_facts' AND (d.key = new.id OR NOT EXISTS (SELECT 1 FROM consensus_facts WHERE id = d.key)));
    -- the new row
    INSERT INTO hive_store_memory_docs (kind, key, conversation_id, at)
    VALUES ('consensus_facts', new.id, new.source_conversation_id, julianday(new.created_at));
    INSERT INTO hive_store_memory_pending (doc_id, indexed, title, body, reindex)
    VALUES (last_insert_rowid(), 0, NULL, NULL, 1);
END;

CREATE TRIGGER hive_store_memory_cf_au
AFTER UPDATE OF id, source_conversation_id, source_question, content, created_at ON consensus_facts BEGIN
    INSERT INTO hive_store_memory_pending (doc_id, indexed, title, body, reindex)
    SELECT d.doc_id, 1, old.source_question,
           old.content, 1
    FROM hive_store_memory_docs AS d WHERE d.kind = 'consensus_facts' AND d.key = old.id
      AND NOT EXISTS (SELECT 1 FROM hive_store_memory_pending AS p WHERE p.doc_id = d.doc_id);
    UPDATE hive_store_memory_docs
    SET key = new.id, conversation_id = new.source_conversation_id, at = julianday(new.created_at)
    WHERE kind = 'consensus_facts' AND key = old.id;
    INSERT INTO hive_store_memory_docs (kind, key, conversation_id, at)
    SELECT 'consensus_facts', new.id, new.source_conversation_id, julianday(new.created_at)
    WHERE NOT EXISTS (SELECT 1 FROM hive_store_memory_docs WHERE kind = 'consensus_facts' AND key = new.id);
    INSERT INTO hive_store_memory_pending (doc_id, indexed, title, body, reindex)
    SELECT d.doc_id, 0, NULL, NULL, 1
    FROM hive_store_memory_docs AS d WHERE d.kind = 'consensus_facts' AND d.key = new.id
      AND NOT EXISTS (SELECT 1 FROM hive_store_memory_pending AS p WHERE p.doc_id = d.doc_id);
END;

CREATE TRIGGER hive_store_memory_cf_ad AFTER DELETE ON consensus_facts BEGIN
    INSERT INTO hive_store_memory_pending (doc_id, indexed, title, body, reindex)
    SELECT d.doc_id, 1, old.source_question,
           old.content, 0
    FROM hive_store_memory_docs AS d WHERE d.kind = 'consensus_facts' AND d.key = old.id
      AND NOT EXISTS (SELECT 1 FROM hive_store_memory_pending AS p WHERE p.doc_id = d.doc_id);
    UPDATE hive_store_memory_pending SET reindex = 0
    WHERE doc_id IN (SELECT doc_id FROM hive_store_memory_docs WHERE kind = 'consensus_facts' AND key = old.id);
    DELETE FROM hive_store_memory_docs WHERE kind = 'consensus_facts' AND key = old.id;
END;

-- messages ----------------------------------------------------------------------------------
CREATE TRIGGER hive_store_memory_msg_bi BEFORE INSERT ON messages BEGIN
    INSERT OR REPLACE INTO hive_store_memory_stash (doc_id, title, body)
    SELECT d.doc_id, '',
           t.content
    FROM messages AS t
    JOIN hive_store_memory_docs AS d ON d.kind = 'messages' AND d.key = t.id
    WHERE t.id = new.id;
END;

CREATE TRIGGER hive_store_memory_msg_ai AFTER INSERT ON messages BEGIN
    -- rows this insert replaced: forget what the index holds for them
    INSERT INTO hive_store_memory_pending (doc_id, indexed, title, body, reindex)
    SELECT s.doc_id, 1, s.title, s.body, 0
    FROM hive_store_memory_stash AS s JOIN hive_store_memory_docs AS d ON d.doc_id = s.doc_id
    WHERE d.kind = 'messages' AND d.key = new.id
      AND NOT EXISTS (SELECT 1 FROM hive_store_memory_pending AS p WHERE p.doc_id = s.doc_id);
    UPDATE hive_store_memory_pending SET reindex = 0
    WHERE doc_id IN (SELECT d.doc_id FROM hive_store_memory_stash AS s JOIN hive_store_memory_docs AS d ON d.doc_id = s.doc_id
                     WHERE d.kind = 'messages' AND d.key = new.id);
    DELETE FROM hive_store_memory_docs
    WHERE doc_id IN (SELECT d.doc_id FROM hive_store_memory_docs AS d WHERE d.kind = 'messages' AND d.key = new.id
                     UNION ALL
                     SELECT d.doc_id FROM hive_store_memory_stash AS s JOIN hive_store_memory_docs AS d ON d.doc_id = s.doc_id
                     WHERE d.kind = 'messages' AND d.key = new.id);
    -- the new row
    INSERT INTO hive_store_memory_docs (kind, key, conversation_id, at)
    VALUES ('messages', new.id, new.conversation_id, julianday(new.timestamp));
    INSERT INTO hive_store_memory_pending (doc_id, indexed, title, body, reindex)
    VALUES (last_insert_rowid(), 0, NULL, NULL, 1);
END;

CREATE TRIGGER hive_store_memory_msg_au
AFTER UPDATE OF id, conversation_id, content, timestamp ON messages BEGIN
    INSERT INTO hive_store_memory_pending (doc_id, indexed, title, body, reindex)
    SELECT d.doc_id, 1, '',
           old.content, 1
    FROM hive_store_memory_docs AS d WHERE d.kind = 'messages' AND d.key = old.id
      AND NOT EXISTS (SELECT 1 FROM hive_store_memory_pending AS p WHERE p.doc_id = d.doc_id);
    UPDATE hive_store_memory_docs
    SET key = new.id, conversation_id = new.conversation_id, at = julianday(new.timestamp)
    WHERE kind = 'messages' AND key = old.id;
    INSERT INTO hive_store_memory_docs (kind, key, conversation_id, at)
    SELECT 'messages', new.id, new.conversation_id, julianday(new.timestamp)
    WHERE NOT EXISTS (SELECT 1 FROM hive_store_memory_docs WHERE kind = 'messages' AND key = new.id);
    INSERT INTO hive_store_memory_pending (doc_id, indexed, title, body, reindex)
    SELECT d.doc_id, 0, NULL, NULL, 1
    FROM hive_store_memory_docs AS d WHERE d.kind = 'messages' AND d.key = new.id
      AND NOT EXISTS (SELECT 1 FROM hive_store_memory_pending AS p WHERE p.doc_id = d.doc_id);
END;

CREATE TRIGGER hive_store_memory_msg_ad AFTER DELETE ON messages BEGIN
    INSERT INTO hive_store_memory_pending (doc_id, indexed, title, body, reindex)
    SELECT d.doc_id, 1, '',
           old.content, 0
    FROM hive_store_memory_docs AS d WHERE d.kind = 'messages' AND d.key = old.id
      AND NOT EXISTS (SELECT 1 FROM hive_store_memory_pending AS p WHERE p.doc_id = d.doc_id);
    UPDATE hive_store_memory_pending SET reindex = 0
    WHERE doc_id IN (SELECT doc_id FROM hive_store_memory_docs WHERE kind = 'messages' AND key = old.id);
    DELETE FROM hive_store_memory_docs WHERE kind = 'messages' AND key = old.id;
END;

-- Index what is already there (an adopted Hive database, a store from before this plugin).
INSERT INTO hive_store_memory_docs (kind, key, conversation_id, at)
SELECT 'knowledge_conversations', id, conversation_id, julianday(created_at) FROM knowledge_conversations ORDER BY rowid;
INSERT INTO hive_store_memory_fts (rowid, title, body)
SELECT d.doc_id, t.question,
       CASE WHEN t.source_of_truth = t.final_answer THEN t.final_answer
            ELSE t.final_answer || char(10) || t.source_of_truth
       END
FROM hive_store_memory_docs AS d JOIN knowledge_conversations AS t ON t.id = d.key
WHERE d.kind = 'knowledge_conversations';
INSERT INTO hive_store_memory_docs (kind, key, conversation_id, at)
SELECT 'curator_truths', id, conversation_id, julianday(created_at) FROM curator_truths ORDER BY rowid;
INSERT INTO hive_store_memory_fts (rowid, title, body)
SELECT d.doc_id, coalesce(t.topic_summary, ''),
       t.curator_output
FROM hive_store_memory_docs AS d JOIN curator_truths AS t ON t.id = d.key
WHERE d.kind = 'curator_truths';
INSERT INTO hive_store_memory_docs (kind, key, conversation_id, at)
SELECT 'consensus_facts', id, source_conversation_id, julianday(created_at) FROM consensus_facts ORDER BY rowid;
INSERT INTO hive_store_memory_fts (rowid, title, body)
SELECT d.doc_id, t.source_question,
       t.content
FROM hive_store_memory_docs AS d JOIN consensus_facts AS t ON t.id = d.key
WHERE d.kind = 'consensus_facts';
INSERT INTO hive_store_memory_docs (kind, key, conversation_id, at)
SELECT 'messages', id, conversation_id, julianday(timestamp) FROM messages ORDER BY rowid;
INSERT INTO hive_store_memory_fts (rowid, title, body)
SELECT d.doc_id, '',
       t.content
FROM hive_store_memory_docs AS d JOIN messages AS t ON t.id = d.key
WHERE d.kind = 'messages';

-- @down
DROP TRIGGER hive_store_memory_kc_bi;
DROP TRIGGER hive_store_memory_kc_ai;
DROP TRIGGER hive_store_memory_kc_au;
DROP TRIGGER hive_store_memory_kc_ad;
DROP TRIGGER hive_store_memory_ct_bi;
DROP TRIGGER hive_store_memory_ct_ai;
DROP TRIGGER hive_store_memory_ct_au;
DROP TRIGGER hive_store_memory_ct_ad;
DROP TRIGGER hive_store_memory_cf_bi;
DROP TRIGGER hive_store_memory_cf_ai;
DROP TRIGGER hive_store_memory_cf_au;
DROP TRIGGER hive_store_memory_cf_ad;
DROP TRIGGER hive_store_memory_msg_bi;
DROP TRIGGER hive_store_memory_msg_ai;
DROP TRIGGER hive_store_memory_msg_au;
DROP TRIGGER hive_store_memory_msg_ad;
DROP TRIGGER hive_store_memory_members_ad;
DROP TRIGGER hive_store_memory_docs_ad;
DROP TABLE hive_store_memory_meta;
DROP TABLE hive_store_memory_terms;
DROP TABLE hive_store_memory_members;
DROP TABLE hive_store_memory_themes;
DROP TABLE hive_store_memory_fts;
DROP TABLE hive_store_memory_pending;
DROP TABLE hive_store_memory_stash;
DROP TABLE hive_store_memory_docs;
