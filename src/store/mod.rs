//! PostgreSQL store: migrations, rooms, meetings and per-mailbox sync state.
