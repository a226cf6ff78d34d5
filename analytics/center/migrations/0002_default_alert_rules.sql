-- The default alert rules, once: a city that deletes them all later keeps them deleted
-- (databases made before migrations existed were seeded when the alert tables were first used,
-- and alert_meta says so).
INSERT INTO alert_rules (name, kind, params)
SELECT name, kind, params FROM (
    SELECT 1 AS k, '窗口30分钟内3次不满意' AS name, 'burst' AS kind, '{"n": 3, "minutes": 30}' AS params
    UNION ALL SELECT 2, '大厅日满意率低于85%', 'low_rate', '{"threshold": 0.85, "min_votes": 20, "level": "hall"}'
    UNION ALL SELECT 3, '县区日满意率低于85%', 'low_rate', '{"threshold": 0.85, "min_votes": 50, "level": "county"}'
    ORDER BY k
)
WHERE NOT EXISTS (SELECT 1 FROM alert_meta WHERE key = 'seeded');
INSERT OR IGNORE INTO alert_meta (key, value) VALUES ('seeded', '1');
