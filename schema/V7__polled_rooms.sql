-- When the listener started polling a room because its affinity group found no free
-- streaming connection slot (HangingConnectionLimit); NULL while the room streams.

ALTER TABLE mailbox_sync
    ADD COLUMN polled_since timestamptz;
