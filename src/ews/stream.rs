//! The body of a GetStreamingEvents response, read one envelope at a time.
//!
//! [`StreamDecoder`] is the I/O-free part: bytes in, [`StreamMessage`]s out, with the
//! unfinished envelope kept inside between calls. [`EventStream`] feeds it from the
//! HTTP body. Neither decides what to do with errors or closed connections; the
//! listener that owns the stream does.

use std::fmt;
use std::pin::Pin;

use bytes::Bytes;
use futures::{Stream, StreamExt};

use super::error::EwsError;
use super::types::StreamMessage;
use super::xml::parse_stream_envelope;
use super::xml::splitter::EnvelopeSplitter;

/// Decodes a concatenation of SOAP envelopes, fed in arbitrary pieces.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    splitter: EnvelopeSplitter,
}

impl StreamDecoder {
    /// A decoder with the default per-envelope size cap (4 MiB).
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes received from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.splitter.push(bytes);
    }

    /// The next complete message, or `None` until more bytes arrive.
    ///
    /// # Errors
    ///
    /// [`EwsError::Malformed`] when the bytes are not a sequence of SOAP envelopes
    /// (DOCTYPE, stray content, an envelope above the size cap, nesting too deep, or a
    /// body that is not a GetStreamingEvents response); the classified error when an
    /// envelope holds a SOAP fault. The stream is unusable after an error.
    pub fn next_message(&mut self) -> Result<Option<StreamMessage>, EwsError> {
        match self.splitter.next_document() {
            Ok(Some(envelope)) => parse_stream_envelope(&envelope).map(Some),
            Ok(None) => Ok(None),
            Err(err) => Err(EwsError::Malformed(err.to_string())),
        }
    }

    /// Checks, at the end of the body, that no envelope was cut off.
    ///
    /// # Errors
    ///
    /// [`EwsError::Malformed`] when the body ended inside an envelope.
    pub fn finish(&self) -> Result<(), EwsError> {
        self.splitter
            .finish()
            .map_err(|err| EwsError::Malformed(err.to_string()))
    }
}

type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, reqwest::Error>> + Send>>;

/// An open GetStreamingEvents connection.
///
/// Dropping it closes the connection. `next_message` is cancel-safe, so it can sit in
/// a `select!` next to a cancellation token or a silence watchdog.
pub struct EventStream {
    body: ByteStream,
    decoder: StreamDecoder,
    ended: bool,
    failed: bool,
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream")
            .field("decoder", &self.decoder)
            .field("ended", &self.ended)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl EventStream {
    pub(crate) fn new(
        body: impl Stream<Item = Result<Bytes, reqwest::Error>> + Send + 'static,
    ) -> Self {
        Self {
            body: Box::pin(body),
            decoder: StreamDecoder::new(),
            ended: false,
            failed: false,
        }
    }

    /// Next complete envelope from the stream; `Ok(None)` at the clean end of the body.
    ///
    /// Cancel-safe: bytes already received stay in the stream between calls.
    ///
    /// # Errors
    ///
    /// [`EwsError::Transport`] when the connection breaks, [`EwsError::Malformed`] when
    /// the body is not a sequence of envelopes or ends inside one, and the classified
    /// error of a SOAP fault. After an error every later call fails too.
    pub async fn next_message(&mut self) -> Result<Option<StreamMessage>, EwsError> {
        if self.failed {
            return Err(EwsError::Malformed("stream already failed".to_owned()));
        }
        let result = self.next_message_inner().await;
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    async fn next_message_inner(&mut self) -> Result<Option<StreamMessage>, EwsError> {
        loop {
            if let Some(message) = self.decoder.next_message()? {
                return Ok(Some(message));
            }
            if self.ended {
                self.decoder.finish()?;
                return Ok(None);
            }
            // The only await point: cancelling here loses nothing, because a chunk is
            // handed over only when the future completes.
            match self.body.next().await {
                Some(Ok(chunk)) => self.decoder.push(&chunk),
                Some(Err(err)) => return Err(EwsError::Transport(err)),
                None => self.ended = true,
            }
        }
    }
}
