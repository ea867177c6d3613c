//! Windows time zone ids (as Exchange sends them) mapped to IANA rules.
