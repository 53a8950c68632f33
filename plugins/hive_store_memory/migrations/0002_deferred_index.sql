-- @name: deferred_index
-- @description: index off the commit path: triggers only append to a change log; a background indexer applies it
--
-- Why: in 0001 the triggers kept hive_store_memory_docs exact and the plugin applied the pending
-- changes to the FTS5 index inside every write transaction. Tokenizing alone (~30-40 us per
-- knowledge entry) cost more than the whole write, so writes of indexed rows took 3-4x as long.
-- From this migration on, a write only appends one row per changed row to
-- hive_store_memory_log (in the trigger, so writes by other programs are recorded too), and the
-- plugin's background indexer (hive_store_memory/indexer.py, index.py: apply_log) applies the
-- log to the documents and the index in short transactions of its own, after the commit. Reads
-- through the plugin (search, context, themes, status, health) apply what is left first, so
-- every committed row is still findable by its caller.
--
-- The log: one row per change of an indexed row, in change order (seq). title/body hold the row's
-- indexed text *before* the change, or NULL. A contentless FTS5 index forgets a document only
-- when given the text it indexed, so that text is captured where a row that has a document
-- changes or goes away: UPDATE of the indexed columns, DELETE (of a row without a document
-- nothing is logged: the index holds nothing for it), and INSERT (OR REPLACE), which deletes the
-- rows it replaces without a DELETE trigger (on the primary key, curator_truths.conversation_id
-- and consensus_facts.semantic_fingerprint). A plain INSERT of a new row costs one index lookup
-- that finds nothing and one appended log row; most of its cost is SQLite's, for having a
-- trigger at all (a statement journal per executed statement).
--
-- Which logged text the index holds: for a document without a mark, the text of its first log
-- row; a document indexed while later changes were still in the log has a mark (the highest seq
-- then in the log: the text it indexed includes every change up to it), and the first log row
-- after the mark holds its indexed text. Marks are dropped once the log has moved past them, so
-- both tables are empty when the indexer has caught up.
--
-- Only built-in SQL is used in the triggers, so other programs writing these tables (the Hive
-- apps) keep the log exact. Not seen (as in 0001): UPDATE OR REPLACE deleting a conflicting row;
-- the memory_index health check then reports documents without rows, and
-- `hive-store memory reindex` repairs it.
--
-- Themes: knowledge documents numbered above the 'assign_from' frontier (hive_store_memory_meta)
-- wait for a theme; the indexer assigns them after indexing them and moves the frontier, so an
-- entry indexed before a crash or a close still gets one at the next catch-up.
--
-- Down: back to 0001's synchronous triggers, with the documents and the index rebuilt from the
-- tables. It drops the log and the marks, so like 0001's own down step it asks for --force while
-- they hold rows (run a search or `hive-store memory status` first to let the indexer catch up).
-- It leaves the 'assign_from' row in hive_store_memory_meta (0001 does not read it).

-- What 0001's triggers recorded and no write or search has applied yet (rows written by other
-- programs): apply it, so that the documents and the index are exact before the switch.
INSERT INTO hive_store_memory_fts (hive_store_memory_fts, rowid, title, body)
SELECT 'delete', doc_id, title, body FROM hive_store_memory_pending WHERE indexed = 1;
INSERT INTO hive_store_memory_fts (rowid, title, body)
SELECT d.doc_id, t.question,
       CASE WHEN t.source_of_truth = t.final_answer THEN t.final_answer
            ELSE t.final_answer || char(10) || t.source_of_truth
       END
FROM hive_store_memory_pending AS p JOIN hive_store_memory_docs AS d ON d.doc_id = p.doc_id
JOIN knowledge_conversations AS t ON t.id = d.key
WHERE p.reindex = 1 AND d.kind = 'knowledge_conversations';
INSERT INTO hive_store_memory_fts (rowid, title, body)
SELECT d.doc_id, coalesce(t.topic_summary, ''), t.curator_output
FROM hive_store_memory_pending AS p JOIN hive_store_memory_docs AS d ON d.doc_id = p.doc_id
JOIN curator_truths AS t ON t.id = d.key
WHERE p.reindex = 1 AND d.kind = 'curator_truths';
INSERT INTO hive_store_memory_fts (rowid, title, body)
SELECT d.doc_id, t.source_question, t.content
FROM hive_store_memory_pending AS p JOIN hive_store_memory_docs AS d ON d.doc_id = p.doc_id
JOIN consensus_facts AS t ON t.id = d.key
WHERE p.reindex = 1 AND d.kind = 'consensus_facts';
INSERT INTO hive_store_memory_fts (rowid, title, body)
SELECT d.doc_id, '', t.content
FROM hive_store_memory_pending AS p JOIN hive_store_memory_docs AS d ON d.doc_id = p.doc_id
JOIN messages AS t ON t.id = d.key
WHERE p.reindex = 1 AND d.kind = 'messages';

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
DROP TRIGGER hive_store_memory_docs_ad;
DROP TABLE hive_store_memory_pending;
DROP TABLE hive_store_memory_stash;

CREATE TABLE hive_store_memory_log (
    seq INTEGER PRIMARY KEY,                   -- change order (rowid: the largest + 1)
    kind TEXT NOT NULL,                        -- the source table
    key,                                       -- its primary key, as stored
    title TEXT,                                -- the indexed text before the change;
    body TEXT                                  --   NULL: there was no row
);

CREATE TABLE hive_store_memory_marks (
    doc_id INTEGER PRIMARY KEY,
    seq INTEGER NOT NULL                       -- indexed with every change up to this seq
);

-- Knowledge entries indexed from now on (documents numbered above this) join a theme
-- automatically, once indexed; those already here keep their themes or wait for `recluster`.
-- The index finds the entries above the frontier without reading the others.
INSERT OR REPLACE INTO hive_store_memory_meta (key, value)
SELECT 'assign_from', coalesce(max(doc_id), 0) FROM hive_store_memory_docs;
CREATE INDEX hive_store_memory_docs_kind_doc ON hive_store_memory_docs (kind, doc_id);

CREATE TRIGGER hive_store_memory_docs_ad AFTER DELETE ON hive_store_memory_docs BEGIN
    DELETE FROM hive_store_memory_members WHERE doc_id = old.doc_id;
    DELETE FROM hive_store_memory_marks WHERE doc_id = old.doc_id;
END;

-- knowledge_conversations -------------------------------------------------------------------
-- One log row per inserted row: its key, and the text of the row it replaces (if any).
CREATE TRIGGER hive_store_memory_kc_bi BEFORE INSERT ON knowledge_conversations BEGIN
    INSERT INTO hive_store_memory_log (kind, key, title, body)
    SELECT 'knowledge_conversations', new.id, t.question,
           CASE WHEN t.source_of_truth = t.final_answer THEN t.final_answer
                ELSE t.final_answer || char(10) || t.source_of_truth
           END
    FROM (SELECT 1) LEFT JOIN knowledge_conversations AS t ON t.id = new.id;
END;

CREATE TRIGGER hive_store_memory_kc_au
AFTER UPDATE OF id, conversation_id, question, final_answer, source_of_truth, created_at ON knowledge_conversations
WHEN old.id IS NOT new.id OR old.conversation_id IS NOT new.conversation_id
  OR old.question IS NOT new.question OR old.final_answer IS NOT new.final_answer
  OR old.source_of_truth IS NOT new.source_of_truth OR old.created_at IS NOT new.created_at
BEGIN
    INSERT INTO hive_store_memory_log (kind, key, title, body)
    SELECT 'knowledge_conversations', old.id,
           CASE WHEN d.doc_id IS NOT NULL THEN old.question END,
           CASE WHEN d.doc_id IS NULL THEN NULL
                WHEN old.source_of_truth = old.final_answer THEN old.final_answer
                ELSE old.final_answer || char(10) || old.source_of_truth
           END
    FROM (SELECT 1) LEFT JOIN hive_store_memory_docs AS d
    ON d.kind = 'knowledge_conversations' AND d.key = old.id;
    INSERT INTO hive_store_memory_log (kind, key)
    SELECT 'knowledge_conversations', new.id WHERE new.id IS NOT old.id;
END;

CREATE TRIGGER hive_store_memory_kc_ad AFTER DELETE ON knowledge_conversations BEGIN
    -- only a row with a document: the index holds nothing for the others
    INSERT INTO hive_store_memory_log (kind, key, title, body)
    SELECT 'knowledge_conversations', old.id, old.question,
           CASE WHEN old.source_of_truth = old.final_answer THEN old.final_answer
                ELSE old.final_answer || char(10) || old.source_of_truth
           END
    FROM hive_store_memory_docs AS d
    WHERE d.kind = 'knowledge_conversations' AND d.key = old.id;
END;

-- curator_truths ----------------------------------------------------------------------------
-- An INTEGER key may be chosen by the insert itself: the rows it may replace (by key or by
-- conversation, as Hive's INSERT OR REPLACE does) are logged before, the new row after.
CREATE TRIGGER hive_store_memory_ct_bi BEFORE INSERT ON curator_truths BEGIN
    INSERT INTO hive_store_memory_log (kind, key, title, body)
    SELECT 'curator_truths', t.id, coalesce(t.topic_summary, ''), t.curator_output
    FROM curator_truths AS t WHERE t.id = new.id OR t.conversation_id = new.conversation_id;
END;

CREATE TRIGGER hive_store_memory_ct_ai AFTER INSERT ON curator_truths BEGIN
    INSERT INTO hive_store_memory_log (kind, key) VALUES ('curator_truths', new.id);
END;

CREATE TRIGGER hive_store_memory_ct_au
AFTER UPDATE OF id, conversation_id, curator_output, topic_summary, created_at ON curator_truths
WHEN old.id IS NOT new.id OR old.conversation_id IS NOT new.conversation_id
  OR old.curator_output IS NOT new.curator_output OR old.topic_summary IS NOT new.topic_summary
  OR old.created_at IS NOT new.created_at
BEGIN
    INSERT INTO hive_store_memory_log (kind, key, title, body)
    SELECT 'curator_truths', old.id,
           CASE WHEN d.doc_id IS NOT NULL THEN coalesce(old.topic_summary, '') END,
           CASE WHEN d.doc_id IS NOT NULL THEN old.curator_output END
    FROM (SELECT 1) LEFT JOIN hive_store_memory_docs AS d
    ON d.kind = 'curator_truths' AND d.key = old.id;
    INSERT INTO hive_store_memory_log (kind, key)
    SELECT 'curator_truths', new.id WHERE new.id IS NOT old.id;
END;

CREATE TRIGGER hive_store_memory_ct_ad AFTER DELETE ON curator_truths BEGIN
    -- only a row with a document: the index holds nothing for the others
    INSERT INTO hive_store_memory_log (kind, key, title, body)
    SELECT 'curator_truths', old.id, coalesce(old.topic_summary, ''), old.curator_output
    FROM hive_store_memory_docs AS d WHERE d.kind = 'curator_truths' AND d.key = old.id;
END;

-- consensus_facts ---------------------------------------------------------------------------
CREATE TRIGGER hive_store_memory_cf_bi BEFORE INSERT ON consensus_facts BEGIN
    INSERT INTO hive_store_memory_log (kind, key, title, body)
    SELECT 'consensus_facts', new.id, t.source_question, t.content
    FROM (SELECT 1) LEFT JOIN consensus_facts AS t ON t.id = new.id;
    -- a row with the same fingerprint and another key, which INSERT OR REPLACE deletes
    INSERT INTO hive_store_memory_log (kind, key, title, body)
    SELECT 'consensus_facts', t.id, t.source_question, t.content
    FROM consensus_facts AS t
    WHERE t.semantic_fingerprint = new.semantic_fingerprint AND t.id IS NOT new.id;
END;

CREATE TRIGGER hive_store_memory_cf_au
AFTER UPDATE OF id, source_conversation_id, source_question, content, created_at ON consensus_facts
WHEN old.id IS NOT new.id OR old.source_conversation_id IS NOT new.source_conversation_id
  OR old.source_question IS NOT new.source_question OR old.content IS NOT new.content
  OR old.created_at IS NOT new.created_at
BEGIN
    INSERT INTO hive_store_memory_log (kind, key, title, body)
    SELECT 'consensus_facts', old.id,
           CASE WHEN d.doc_id IS NOT NULL THEN old.source_question END,
           CASE WHEN d.doc_id IS NOT NULL THEN old.content END
    FROM (SELECT 1) LEFT JOIN hive_store_memory_docs AS d
    ON d.kind = 'consensus_facts' AND d.key = old.id;
    INSERT INTO hive_store_memory_log (kind, key)
    SELECT 'consensus_facts', new.id WHERE new.id IS NOT old.id;
END;

CREATE TRIGGER hive_store_memory_cf_ad AFTER DELETE ON consensus_facts BEGIN
    -- only a row with a document: the index holds nothing for the others
    INSERT INTO hive_store_memory_log (kind, key, title, body)
    SELECT 'consensus_facts', old.id, old.source_question, old.content
    FROM hive_store_memory_docs AS d WHERE d.kind = 'consensus_facts' AND d.key = old.id;
END;

-- messages ----------------------------------------------------------------------------------
CREATE TRIGGER hive_store_memory_msg_bi BEFORE INSERT ON messages BEGIN
    INSERT INTO hive_store_memory_log (kind, key, title, body)
    SELECT 'messages', new.id, CASE WHEN t.rowid IS NOT NULL THEN '' END, t.content
    FROM (SELECT 1) LEFT JOIN messages AS t ON t.id = new.id;
END;

CREATE TRIGGER hive_store_memory_msg_au
AFTER UPDATE OF id, conversation_id, content, timestamp ON messages
WHEN old.id IS NOT new.id OR old.conversation_id IS NOT new.conversation_id
  OR old.content IS NOT new.content OR old.timestamp IS NOT new.timestamp
BEGIN
    INSERT INTO hive_store_memory_log (kind, key, title, body)
    SELECT 'messages', old.id,
           CASE WHEN d.doc_id IS NOT NULL THEN '' END,
           CASE WHEN d.doc_id IS NOT NULL THEN old.content END
    FROM (SELECT 1) LEFT JOIN hive_store_memory_docs AS d
    ON d.kind = 'messages' AND d.key = old.id;
    INSERT INTO hive_store_memory_log (kind, key)
    SELECT 'messages', new.id WHERE new.id IS NOT old.id;
END;

CREATE TRIGGER hive_store_memory_msg_ad AFTER DELETE ON messages BEGIN
    -- only a row with a document: the index holds nothing for the others
    INSERT INTO hive_store_memory_log (kind, key, title, body)
    SELECT 'messages', old.id, '', old.content
    FROM hive_store_memory_docs AS d WHERE d.kind = 'messages' AND d.key = old.id;
END;

-- @down
DROP TRIGGER hive_store_memory_kc_bi;
DROP TRIGGER hive_store_memory_kc_au;
DROP TRIGGER hive_store_memory_kc_ad;
DROP TRIGGER hive_store_memory_ct_bi;
DROP TRIGGER hive_store_memory_ct_ai;
DROP TRIGGER hive_store_memory_ct_au;
DROP TRIGGER hive_store_memory_ct_ad;
DROP TRIGGER hive_store_memory_cf_bi;
DROP TRIGGER hive_store_memory_cf_au;
DROP TRIGGER hive_store_memory_cf_ad;
DROP TRIGGER hive_store_memory_msg_bi;
DROP TRIGGER hive_store_memory_msg_au;
DROP TRIGGER hive_store_memory_msg_ad;
DROP TRIGGER hive_store_memory_docs_ad;
DROP INDEX hive_store_memory_docs_kind_doc;
DROP TABLE hive_store_memory_marks;
DROP TABLE hive_store_memory_log;

CREATE TABLE hive_store_memory_pending (
    doc_id INTEGER PRIMARY KEY,
    indexed INTEGER NOT NULL,                  -- 1: the index holds (title, body): forget them
    title TEXT,
    body TEXT,
    reindex INTEGER NOT NULL                   -- 1: index the row's current text
);

CREATE TABLE hive_store_memory_stash (
    doc_id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    body TEXT NOT NULL
);

CREATE TRIGGER hive_store_memory_docs_ad AFTER DELETE ON hive_store_memory_docs BEGIN
    DELETE FROM hive_store_memory_members WHERE doc_id = old.doc_id;
    DELETE FROM hive_store_memory_stash WHERE doc_id = old.doc_id;
END;

-- 0001 kept one document per row: make the documents match the rows again (keeping the numbers,
-- and themes, of those that stay), then index every document from the tables.
DELETE FROM hive_store_memory_docs WHERE kind = 'knowledge_conversations' AND NOT EXISTS (SELECT 1 FROM knowledge_conversations AS t WHERE t.id = hive_store_memory_docs.key);
DELETE FROM hive_store_memory_docs WHERE kind = 'curator_truths' AND NOT EXISTS (SELECT 1 FROM curator_truths AS t WHERE t.id = hive_store_memory_docs.key);
DELETE FROM hive_store_memory_docs WHERE kind = 'consensus_facts' AND NOT EXISTS (SELECT 1 FROM consensus_facts AS t WHERE t.id = hive_store_memory_docs.key);
DELETE FROM hive_store_memory_docs WHERE kind = 'messages' AND NOT EXISTS (SELECT 1 FROM messages AS t WHERE t.id = hive_store_memory_docs.key);
UPDATE hive_store_memory_docs SET conversation_id = t.conversation_id, at = julianday(t.created_at)
FROM knowledge_conversations AS t WHERE hive_store_memory_docs.kind = 'knowledge_conversations' AND t.id = hive_store_memory_docs.key;
UPDATE hive_store_memory_docs SET conversation_id = t.conversation_id, at = julianday(t.created_at)
FROM curator_truths AS t WHERE hive_store_memory_docs.kind = 'curator_truths' AND t.id = hive_store_memory_docs.key;
UPDATE hive_store_memory_docs SET conversation_id = t.source_conversation_id, at = julianday(t.created_at)
FROM consensus_facts AS t WHERE hive_store_memory_docs.kind = 'consensus_facts' AND t.id = hive_store_memory_docs.key;
UPDATE hive_store_memory_docs SET conversation_id = t.conversation_id, at = julianday(t.timestamp)
FROM messages AS t WHERE hive_store_memory_docs.kind = 'messages' AND t.id = hive_store_memory_docs.key;
INSERT INTO hive_store_memory_docs (kind, key, conversation_id, at)
SELECT 'knowledge_conversations', t.id, t.conversation_id, julianday(t.created_at) FROM knowledge_conversations AS t
WHERE NOT EXISTS (SELECT 1 FROM hive_store_memory_docs AS d WHERE d.kind = 'knowledge_conversations' AND d.key = t.id) ORDER BY t.rowid;
INSERT INTO hive_store_memory_docs (kind, key, conversation_id, at)
SELECT 'curator_truths', t.id, t.conversation_id, julianday(t.created_at) FROM curator_truths AS t
WHERE NOT EXISTS (SELECT 1 FROM hive_store_memory_docs AS d WHERE d.kind = 'curator_truths' AND d.key = t.id) ORDER BY t.rowid;
INSERT INTO hive_store_memory_docs (kind, key, conversation_id, at)
SELECT 'consensus_facts', t.id, t.source_conversation_id, julianday(t.created_at) FROM consensus_facts AS t
WHERE NOT EXISTS (SELECT 1 FROM hive_store_memory_docs AS d WHERE d.kind = 'consensus_facts' AND d.key = t.id) ORDER BY t.rowid;
INSERT INTO hive_store_memory_docs (kind, key, conversation_id, at)
SELECT 'messages', t.id, t.conversation_id, julianday(t.timestamp) FROM messages AS t
WHERE NOT EXISTS (SELECT 1 FROM hive_store_memory_docs AS d WHERE d.kind = 'messages' AND d.key = t.id) ORDER BY t.rowid;
INSERT INTO hive_store_memory_fts (hive_store_memory_fts) VALUES ('delete-all');
INSERT INTO hive_store_memory_fts (rowid, title, body)
SELECT d.doc_id, t.question,
       CASE WHEN t.source_of_truth = t.final_answer THEN t.final_answer
            ELSE t.final_answer || char(10) || t.source_of_truth
       END
FROM hive_store_memory_docs AS d JOIN knowledge_conversations AS t ON t.id = d.key
WHERE d.kind = 'knowledge_conversations';
INSERT INTO hive_store_memory_fts (rowid, title, body)
SELECT d.doc_id, coalesce(t.topic_summary, ''), t.curator_output
FROM hive_store_memory_docs AS d JOIN curator_truths AS t ON t.id = d.key
WHERE d.kind = 'curator_truths';
INSERT INTO hive_store_memory_fts (rowid, title, body)
SELECT d.doc_id, t.source_question, t.content
FROM hive_store_memory_docs AS d JOIN consensus_facts AS t ON t.id = d.key
WHERE d.kind = 'consensus_facts';
INSERT INTO hive_store_memory_fts (rowid, title, body)
SELECT d.doc_id, '', t.content
FROM hive_store_memory_docs AS d JOIN messages AS t ON t.id = d.key
WHERE d.kind = 'messages';

-- 0001's triggers, as they were.
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
