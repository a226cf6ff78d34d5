-- The monthly bulletins the schedule generated: where the files are, and whether the
-- notification with their link went out.
CREATE TABLE bulletins (
    month TEXT PRIMARY KEY,            -- 2026-11
    generated_at TEXT NOT NULL,        -- ISO, UTC
    files TEXT NOT NULL,               -- JSON: format -> {"path", "bytes", "sha256"}
    notified_at TEXT,                  -- ISO, UTC: every notification target accepted the link
    notify_error TEXT                  -- the last failure, while a target has not accepted it
);
