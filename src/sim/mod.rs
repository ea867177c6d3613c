//! The bundled Exchange simulator: a fake EWS server with a control API.
