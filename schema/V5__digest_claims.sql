-- A digest is claimed before it is sent: its row is committed in state 'sending',
-- with the message id its email carries and its issues taken, and becomes 'sent'
-- once the email went out. A claim a crash left behind is resolved by asking
-- whether that message went out (Sent Items), not by sending blindly again.
ALTER TABLE notification_digests
    ADD COLUMN state text NOT NULL DEFAULT 'sent'
        CONSTRAINT notification_digests_state_check CHECK (state IN ('sending', 'sent')),
    ADD COLUMN message_id text,
    ADD COLUMN claimed_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN send_attempts integer NOT NULL DEFAULT 0;

CREATE UNIQUE INDEX notification_digests_message_id_idx ON notification_digests (message_id);
CREATE INDEX notification_digests_sending_idx ON notification_digests (claimed_at)
    WHERE state = 'sending';
