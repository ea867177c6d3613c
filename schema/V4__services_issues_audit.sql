-- Services the booking system attached to meetings, the out-of-sync issues found while
-- syncing (the notification outbox), the digests sent from it, and the audit trail of
-- every change the sync applied to `meetings`.

-- Created by the booking system's application; booking-sync only reads and flags them.
CREATE TABLE meeting_services (
    id          bigserial PRIMARY KEY,
    meeting_id  bigint NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    kind        text NOT NULL,
    description text NOT NULL DEFAULT '',
    -- The last moment the service can still be changed.
    deadline    timestamptz,
    status      text NOT NULL DEFAULT 'active'
        CONSTRAINT meeting_services_status_check
        CHECK (status IN ('active', 'needs_attention', 'cancelled')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX meeting_services_meeting_idx ON meeting_services (meeting_id);

-- One row per out-of-sync issue. dedupe_key names (meeting, rule, Exchange version), so
-- a replay or a restart finds the row already there and queues nothing twice.
CREATE TABLE sync_issues (
    id          bigserial PRIMARY KEY,
    dedupe_key  text NOT NULL,
    rule        text NOT NULL,
    room_id     bigint NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    meeting_id  bigint REFERENCES meetings (id) ON DELETE SET NULL,
    -- Lower-case address of whom to tell; null when nobody can be told.
    recipient   text,
    audience    text NOT NULL
        CONSTRAINT sync_issues_audience_check CHECK (audience IN ('user', 'admin')),
    details     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    digest_id   bigint,
    CONSTRAINT sync_issues_dedupe_key UNIQUE (dedupe_key)
);

CREATE INDEX sync_issues_pending_idx ON sync_issues (recipient, created_at)
    WHERE digest_id IS NULL AND recipient IS NOT NULL;

-- One row per email sent from the outbox.
CREATE TABLE notification_digests (
    id          bigserial PRIMARY KEY,
    recipient   text NOT NULL,
    audience    text NOT NULL,
    subject     text NOT NULL,
    issue_count integer NOT NULL,
    sent_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX notification_digests_recipient_idx ON notification_digests (recipient, sent_at);

-- One row per change the sync applied to a meeting row.
CREATE TABLE meeting_audit (
    id               bigserial PRIMARY KEY,
    at               timestamptz NOT NULL DEFAULT now(),
    room_id          bigint NOT NULL,
    meeting_id       bigint,
    exchange_uid     text NOT NULL,
    occurrence_start timestamptz,
    action           text NOT NULL
        CONSTRAINT meeting_audit_action_check
        CHECK (action IN ('insert', 'update', 'cancel', 'link')),
    origin           text NOT NULL,
    before           jsonb,
    after            jsonb
);

CREATE INDEX meeting_audit_at_idx ON meeting_audit (at);
CREATE INDEX meeting_audit_room_idx ON meeting_audit (room_id, at);
CREATE INDEX meeting_audit_uid_idx ON meeting_audit (exchange_uid);

-- Dry run: progress kept apart from live progress (mailbox_sync), and the plan.
CREATE TABLE dry_run_sync (
    room_id               bigint PRIMARY KEY REFERENCES rooms (id) ON DELETE CASCADE,
    sync_state            text,
    initial_sync_complete boolean NOT NULL DEFAULT false,
    updated_at            timestamptz NOT NULL DEFAULT now()
);

-- The latest decision per meeting, relative to the booking tables as they are.
CREATE TABLE plan_entries (
    id               bigserial PRIMARY KEY,
    room_id          bigint NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    exchange_uid     text NOT NULL,
    occurrence_start timestamptz,
    action           text NOT NULL,
    before           jsonb,
    after            jsonb,
    planned_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT plan_entries_key UNIQUE NULLS NOT DISTINCT (room_id, exchange_uid, occurrence_start)
);

-- The issues a live run would queue, and to whom.
CREATE TABLE plan_issues (
    dedupe_key text PRIMARY KEY,
    rule       text NOT NULL,
    room_id    bigint NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    recipient  text,
    audience   text NOT NULL,
    details    jsonb NOT NULL,
    planned_at timestamptz NOT NULL DEFAULT now()
);
