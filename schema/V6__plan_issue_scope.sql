-- A dry run replaces its decisions about a meeting whenever it decides about it again:
-- each planned issue names the room whose pass decided it and the meeting's UID, so
-- the issues planned for an earlier version of a meeting can be forgotten.
ALTER TABLE plan_issues
    ADD COLUMN decided_in bigint REFERENCES rooms (id) ON DELETE CASCADE,
    ADD COLUMN exchange_uid text;

CREATE INDEX plan_issues_decided_idx ON plan_issues (decided_in, exchange_uid);
