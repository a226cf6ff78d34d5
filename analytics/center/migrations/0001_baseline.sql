-- accounts: users, login failures, API tokens, the audit log, web sessions
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    county_code TEXT,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    last_login TEXT,
    password_changed_at TEXT
);
CREATE TABLE IF NOT EXISTS login_failures (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,          -- 'user' or 'ip'
    key TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS login_failures_key ON login_failures(kind, key, at);
CREATE TABLE IF NOT EXISTS api_tokens (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    token_hash TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    last_used TEXT,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS audit_log (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    username TEXT,
    role TEXT,
    ip TEXT,
    action TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}',
    chain TEXT                   -- SHA-256 of the previous entry's chain and this entry (tamper evidence)
);
CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log(at);
-- The audit log is append-only: no role, and no code path, may rewrite or erase it.
CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TABLE IF NOT EXISTS web_sessions (
    id INTEGER PRIMARY KEY,
    sid_hash TEXT NOT NULL UNIQUE,   -- SHA-256 of the id in the cookie
    user_id INTEGER NOT NULL REFERENCES users(id),
    ip TEXT,
    created_at TEXT NOT NULL,        -- wall-clock UTC (not the app clock, which a demo may speed up)
    ended_at TEXT,
    last_seen TEXT                   -- wall-clock UTC of the last request, to the minute (idle timeout)
);
CREATE INDEX IF NOT EXISTS web_sessions_user ON web_sessions(user_id);

-- registry versions
CREATE TABLE IF NOT EXISTS registry_versions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    imported_at TEXT NOT NULL,
    source TEXT NOT NULL,
    sample INTEGER NOT NULL,
    files TEXT NOT NULL
);

-- import log
CREATE TABLE IF NOT EXISTS import_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,                -- survey | scores
    quarter TEXT NOT NULL,
    filename TEXT NOT NULL,
    imported_at TEXT NOT NULL,         -- UTC ISO 8601
    rows_read INTEGER NOT NULL,
    imported INTEGER NOT NULL,
    rejected INTEGER NOT NULL,
    report TEXT NOT NULL               -- ImportReport.to_dict() as JSON (phones masked)
);

-- 12333 survey answers and the center's secrets
CREATE TABLE IF NOT EXISTS survey_answers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    quarter TEXT NOT NULL,
    row_key TEXT NOT NULL,
    import_id INTEGER,
    answered_at TEXT NOT NULL,         -- China time, ISO 8601
    level TEXT NOT NULL,               -- county | township
    code TEXT NOT NULL,
    county_code TEXT NOT NULL,
    rating TEXT NOT NULL,              -- satisfied | basic | unsatisfied | excluded
    answer TEXT NOT NULL,              -- the answer as written (cleaned)
    phone_last4 TEXT NOT NULL,
    phone_hash TEXT NOT NULL,          -- HMAC-SHA256(salt, digits), 16 hex; '' when no phone
    note TEXT NOT NULL,                -- digit runs of 7+ masked
    source_row INTEGER NOT NULL,
    UNIQUE (quarter, row_key)
);
CREATE INDEX IF NOT EXISTS survey_answers_quarter ON survey_answers (quarter, level, code);
CREATE TABLE IF NOT EXISTS center_secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- composite assessment scores
CREATE TABLE IF NOT EXISTS base_scores (
    quarter TEXT NOT NULL,
    level TEXT NOT NULL,               -- county | township
    code TEXT NOT NULL,
    score REAL NOT NULL,
    import_id INTEGER,
    source_row INTEGER NOT NULL,
    PRIMARY KEY (quarter, level, code)
);

-- published quarterly results
CREATE TABLE IF NOT EXISTS quarter_results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    quarter TEXT NOT NULL,            -- e.g. 2026Q3
    params TEXT NOT NULL,             -- JSON of model.Params, sorted keys
    fingerprint TEXT NOT NULL,        -- sha256 of the figures (all tables)
    computed_at TEXT NOT NULL,        -- ISO 8601 UTC
    published_at TEXT NOT NULL,
    version TEXT NOT NULL,            -- manyi software version
    summary TEXT NOT NULL,            -- JSON: mu_T, mu_P, lam, y_ref, notes, input_counts, sample
    UNIQUE (quarter, params, fingerprint)
);
CREATE TABLE IF NOT EXISTS quarter_tables (
    result_id INTEGER NOT NULL REFERENCES quarter_results(id),
    name TEXT NOT NULL,               -- counties | townships | halls | windows | triangulation | staff
    data TEXT NOT NULL,               -- JSON {columns, dtypes, data}; floats exact (repr)
    PRIMARY KEY (result_id, name)
);
CREATE TABLE IF NOT EXISTS quarter_inputs (
    result_id INTEGER NOT NULL REFERENCES quarter_results(id),
    level TEXT NOT NULL,              -- county | township
    code TEXT NOT NULL,
    S_T INTEGER NOT NULL, B_T INTEGER NOT NULL, U_T INTEGER NOT NULL, excluded_T INTEGER NOT NULL,
    S_P INTEGER NOT NULL, B_P INTEGER NOT NULL, U_P INTEGER NOT NULL,
    G REAL,
    PRIMARY KEY (result_id, level, code)
);

-- follow-up cases (督办)
CREATE TABLE IF NOT EXISTS cases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    group_key TEXT NOT NULL,            -- window id, or 'device:<id>' for an unassigned terminal
    window_id TEXT, hall_id TEXT, township_code TEXT, county_code TEXT,
    device TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'open',
    opened_at TEXT NOT NULL,            -- ISO, UTC: when the case was created
    first_vote_at TEXT NOT NULL,
    last_vote_at TEXT NOT NULL,
    deadline TEXT NOT NULL,             -- ISO, China time: end of the last working day
    vote_count INTEGER NOT NULL DEFAULT 0,
    assignee TEXT,
    callback_result TEXT, callback_note TEXT, callback_at TEXT,
    closed_at TEXT, close_reason TEXT, closed_by TEXT
);
CREATE INDEX IF NOT EXISTS cases_group ON cases(group_key, status);
CREATE INDEX IF NOT EXISTS cases_county ON cases(county_code, status);
CREATE TABLE IF NOT EXISTS case_votes (
    device TEXT NOT NULL, seq INTEGER NOT NULL,
    case_id INTEGER NOT NULL REFERENCES cases(id),
    time TEXT NOT NULL,
    PRIMARY KEY (device, seq)
);
CREATE INDEX IF NOT EXISTS case_votes_case ON case_votes(case_id);
CREATE TABLE IF NOT EXISTS case_notes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id INTEGER NOT NULL REFERENCES cases(id),
    author TEXT NOT NULL, kind TEXT NOT NULL DEFAULT 'note', text TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS holidays (
    day TEXT PRIMARY KEY,               -- YYYY-MM-DD
    kind TEXT NOT NULL CHECK (kind IN ('holiday', 'workday')),
    name TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS followup_settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS followup_state (key TEXT PRIMARY KEY, value TEXT);

-- alerts
CREATE TABLE IF NOT EXISTS alert_rules (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    params TEXT NOT NULL,          -- JSON
    enabled INTEGER NOT NULL DEFAULT 1,
    updated_at TEXT, updated_by TEXT
);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rule_id INTEGER NOT NULL, rule_name TEXT NOT NULL, kind TEXT NOT NULL,
    scope_level TEXT NOT NULL, scope_code TEXT NOT NULL, scope_name TEXT NOT NULL DEFAULT '',
    county_code TEXT,
    dedup_key TEXT NOT NULL,
    first_at TEXT NOT NULL, last_at TEXT NOT NULL,
    value REAL, n INTEGER,
    message TEXT NOT NULL,
    created_at TEXT NOT NULL,
    ack_at TEXT, ack_by TEXT,
    UNIQUE (rule_id, dedup_key)
);
CREATE INDEX IF NOT EXISTS alerts_county ON alerts(county_code, id);
CREATE TABLE IF NOT EXISTS alert_meta (key TEXT PRIMARY KEY, value TEXT);

