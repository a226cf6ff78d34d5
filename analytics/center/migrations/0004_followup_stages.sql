-- The follow-up rules of the 好差评 system (issue 14): three deadlines per case (contact the
-- citizen, fix, second 回访 after the fix), the fix and the citizen's rating of it (追评),
-- calls without answer, and why a case was closed. The holidays table keeps the admin's
-- overrides; the statutory calendar comes from the chinesecalendar package.
ALTER TABLE cases ADD COLUMN contact_deadline TEXT;     -- ISO, China time; NULL on older cases
ALTER TABLE cases ADD COLUMN contacted_at TEXT;         -- ISO, UTC: the first 回访 call recorded
ALTER TABLE cases ADD COLUMN no_answer_calls INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cases ADD COLUMN rectified_at TEXT;         -- ISO, UTC: 整改 recorded
ALTER TABLE cases ADD COLUMN rectify_note TEXT;
ALTER TABLE cases ADD COLUMN revisit_deadline TEXT;     -- ISO, China time: set when the fix is recorded
ALTER TABLE cases ADD COLUMN revisit_result TEXT;       -- 追评: the citizen's rating of the fix
ALTER TABLE cases ADD COLUMN revisit_note TEXT;
ALTER TABLE cases ADD COLUMN revisit_at TEXT;
ALTER TABLE cases ADD COLUMN close_code TEXT;           -- analytics.cases.rules.CLOSE_CODES
UPDATE cases SET contacted_at = callback_at WHERE callback_at IS NOT NULL;
UPDATE cases SET no_answer_calls = 1 WHERE callback_result = '未接通';
UPDATE cases SET close_code = 'other' WHERE status = 'closed';    -- their reason says it all
