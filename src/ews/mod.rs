//! EWS client: builds SOAP requests, parses responses and the notification stream.
