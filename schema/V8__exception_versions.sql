-- The version of the modified occurrence (exception) a meeting row was written from.
-- A series row carries the master's LastModifiedTime and ChangeKey; an exception has
-- its own, so an older exception served after a newer one can be refused.

ALTER TABLE meetings
    ADD COLUMN exception_change_key    text,
    ADD COLUMN exception_last_modified timestamptz;
