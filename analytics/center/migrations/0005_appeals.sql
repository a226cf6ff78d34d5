-- 申诉复核 (issue 14): a county appeals unsatisfied votes as 误评 or 恶意差评; the city reviews.
-- An accepted appeal marks its votes 不予采纳: they stay in the vote store untouched and are
-- left out of the scores wherever votes are counted (analytics.votes). A published quarter
-- keeps the exclusions it was computed with (quarter_exclusions).
CREATE TABLE appeals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    county_code TEXT,                  -- the county the votes count for
    target_kind TEXT NOT NULL CHECK (target_kind IN ('vote', 'case', 'alert')),
    target_ref TEXT NOT NULL,          -- 'device:seq', the case id or the alert id
    kind TEXT NOT NULL CHECK (kind IN ('mistaken', 'malicious')),
    reason TEXT NOT NULL,
    evidence TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'accepted', 'rejected', 'withdrawn')),
    filed_by TEXT NOT NULL, filed_at TEXT NOT NULL,       -- ISO, UTC
    reviewed_by TEXT, reviewed_at TEXT, review_note TEXT
);
CREATE INDEX appeals_county ON appeals(county_code, status);
CREATE TABLE appeal_votes (
    appeal_id INTEGER NOT NULL REFERENCES appeals(id),
    device TEXT NOT NULL, seq INTEGER NOT NULL,
    rating TEXT NOT NULL,
    time TEXT NOT NULL,                -- ISO, UTC: the vote's time
    PRIMARY KEY (appeal_id, device, seq)
);
CREATE INDEX appeal_votes_vote ON appeal_votes(device, seq);
CREATE INDEX appeal_votes_time ON appeal_votes(time);
CREATE TABLE quarter_exclusions (
    result_id INTEGER NOT NULL,        -- quarter_results.id
    appeal_id INTEGER NOT NULL,
    device TEXT NOT NULL, seq INTEGER NOT NULL,
    rating TEXT NOT NULL, time TEXT NOT NULL,
    PRIMARY KEY (result_id, device, seq)
);
