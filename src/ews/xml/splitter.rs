//! Incremental framing of a GetStreamingEvents body into whole SOAP envelopes.
//!
//! The body is a concatenation of XML documents split across arbitrary HTTP chunks.
//! [`EnvelopeSplitter`] takes bytes as they arrive, runs a small resumable lexer over
//! them (tags, quoted attribute values, comments, CDATA sections and processing
//! instructions) to track element depth, and hands out each top-level element as soon
//! as its end tag arrives. Between documents only whitespace, a byte order mark, XML
//! declarations and comments are allowed. The lexer never looks at names, so prefixes
//! do not matter; whether a document really is a SOAP envelope is checked namespace-aware
//! by the tree parser afterwards. Partial bytes stay in the splitter between calls, and
//! the bytes of one unfinished document are capped.

use super::tree::MAX_DEPTH;

/// Largest single envelope accepted from a stream, in bytes.
pub(crate) const MAX_ENVELOPE_BYTES: usize = 4 << 20;

const COMMENT_OPEN: &[u8] = b"<!--";
const CDATA_OPEN: &[u8] = b"<![CDATA[";
const DOCTYPE_OPEN: &[u8] = b"<!DOCTYPE";
const BYTE_ORDER_MARK: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// Why the stream cannot be framed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SplitError {
    #[error("document type declarations are not accepted")]
    Doctype,
    #[error("an envelope exceeds {0} bytes")]
    TooLarge(usize),
    #[error("elements nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("unexpected content between envelopes")]
    UnexpectedContent,
    #[error("end tag without a matching start tag")]
    UnbalancedEnd,
    #[error("stream ended inside an envelope")]
    Truncated,
    #[error("unknown markup declaration")]
    UnknownDeclaration,
}

/// Where the lexer is inside the markup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    /// Character data (or whitespace between documents).
    Text,
    /// Just after `<`.
    Open,
    /// After `<!`, deciding between comment, CDATA and DOCTYPE.
    Declaration,
    /// Inside `<!-- ... -->`; counts trailing dashes.
    Comment { dashes: u8 },
    /// Inside `<![CDATA[ ... ]]>`; counts trailing brackets.
    CData { brackets: u8 },
    /// Inside `<? ... ?>`; whether the previous byte was `?`.
    Instruction { question: bool },
    /// Inside a start tag; the open quote, if any, and whether the last byte was `/`.
    StartTag { quote: Option<u8>, slash: bool },
    /// Inside an end tag.
    EndTag,
}

/// Cuts a byte stream into complete top-level XML documents.
#[derive(Debug)]
pub(crate) struct EnvelopeSplitter {
    buffer: Vec<u8>,
    scanned: usize,
    lex: Lex,
    depth: usize,
    markup_start: usize,
    document_start: usize,
    max_bytes: usize,
}

impl Default for EnvelopeSplitter {
    fn default() -> Self {
        Self::with_limit(MAX_ENVELOPE_BYTES)
    }
}

impl EnvelopeSplitter {
    /// A splitter that refuses documents larger than `max_bytes`.
    pub fn with_limit(max_bytes: usize) -> Self {
        Self {
            buffer: Vec::new(),
            scanned: 0,
            lex: Lex::Text,
            depth: 0,
            markup_start: 0,
            document_start: 0,
            max_bytes,
        }
    }

    /// Appends bytes received from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete top-level document, if the buffered bytes hold one.
    pub fn next_document(&mut self) -> Result<Option<Vec<u8>>, SplitError> {
        while self.scanned < self.buffer.len() {
            let index = self.scanned;
            let byte = self.buffer[index];
            self.scanned += 1;
            if let Some(end) = self.step(index, byte)? {
                let document = self.buffer[self.document_start..end].to_vec();
                self.buffer.drain(..end);
                self.scanned = 0;
                self.lex = Lex::Text;
                return Ok(Some(document));
            }
        }
        if self.depth == 0 && self.lex == Lex::Text {
            self.buffer.clear();
            self.scanned = 0;
        } else if self.buffer.len() > self.max_bytes {
            return Err(SplitError::TooLarge(self.max_bytes));
        }
        Ok(None)
    }

    /// Checks that the stream did not end inside a document.
    pub fn finish(&self) -> Result<(), SplitError> {
        if self.depth == 0 && self.lex == Lex::Text {
            Ok(())
        } else {
            Err(SplitError::Truncated)
        }
    }

    /// Advances the lexer by one byte; returns the end offset when a document closes.
    fn step(&mut self, index: usize, byte: u8) -> Result<Option<usize>, SplitError> {
        match self.lex {
            Lex::Text => {
                if byte == b'<' {
                    self.markup_start = index;
                    self.lex = Lex::Open;
                } else if self.depth == 0 && !is_space_or_bom(byte) {
                    return Err(SplitError::UnexpectedContent);
                }
            }
            Lex::Open => {
                self.lex = match byte {
                    b'/' => Lex::EndTag,
                    b'?' => Lex::Instruction { question: false },
                    b'!' => Lex::Declaration,
                    _ => {
                        if self.depth == 0 {
                            self.document_start = self.markup_start;
                        }
                        Lex::StartTag {
                            quote: None,
                            slash: false,
                        }
                    }
                };
            }
            Lex::Declaration => self.lex = self.declaration(index)?,
            Lex::Comment { dashes } => {
                self.lex = match byte {
                    b'-' => Lex::Comment {
                        dashes: dashes.saturating_add(1),
                    },
                    b'>' if dashes >= 2 => Lex::Text,
                    _ => Lex::Comment { dashes: 0 },
                };
            }
            Lex::CData { brackets } => {
                self.lex = match byte {
                    b']' => Lex::CData {
                        brackets: brackets.saturating_add(1),
                    },
                    b'>' if brackets >= 2 => Lex::Text,
                    _ => Lex::CData { brackets: 0 },
                };
            }
            Lex::Instruction { question } => {
                self.lex = match byte {
                    b'>' if question => Lex::Text,
                    _ => Lex::Instruction {
                        question: byte == b'?',
                    },
                };
            }
            Lex::StartTag { quote, slash } => return self.start_tag(index, byte, quote, slash),
            Lex::EndTag => {
                if byte == b'>' {
                    self.lex = Lex::Text;
                    self.depth = self.depth.checked_sub(1).ok_or(SplitError::UnbalancedEnd)?;
                    if self.depth == 0 {
                        return Ok(Some(index + 1));
                    }
                }
            }
        }
        Ok(None)
    }

    fn start_tag(
        &mut self,
        index: usize,
        byte: u8,
        quote: Option<u8>,
        slash: bool,
    ) -> Result<Option<usize>, SplitError> {
        match (quote, byte) {
            (Some(open), _) => {
                let quote = if byte == open { None } else { Some(open) };
                self.lex = Lex::StartTag {
                    quote,
                    slash: false,
                };
            }
            (None, b'"' | b'\'') => {
                self.lex = Lex::StartTag {
                    quote: Some(byte),
                    slash: false,
                };
            }
            (None, b'>') => {
                self.lex = Lex::Text;
                if slash {
                    if self.depth == 0 {
                        return Ok(Some(index + 1));
                    }
                } else {
                    self.depth += 1;
                    if self.depth > MAX_DEPTH {
                        return Err(SplitError::TooDeep);
                    }
                }
            }
            (None, _) => {
                self.lex = Lex::StartTag {
                    quote: None,
                    slash: byte == b'/',
                };
            }
        }
        Ok(None)
    }

    /// Decides what `<!` opens once enough bytes are there.
    fn declaration(&self, index: usize) -> Result<Lex, SplitError> {
        let seen = &self.buffer[self.markup_start..=index];
        if seen == COMMENT_OPEN {
            return Ok(Lex::Comment { dashes: 0 });
        }
        if seen == CDATA_OPEN {
            if self.depth == 0 {
                return Err(SplitError::UnexpectedContent);
            }
            return Ok(Lex::CData { brackets: 0 });
        }
        if seen == DOCTYPE_OPEN {
            return Err(SplitError::Doctype);
        }
        let candidates = [COMMENT_OPEN, CDATA_OPEN, DOCTYPE_OPEN];
        if candidates
            .iter()
            .any(|candidate| candidate.starts_with(seen))
        {
            Ok(Lex::Declaration)
        } else {
            Err(SplitError::UnknownDeclaration)
        }
    }
}

fn is_space_or_bom(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n') || BYTE_ORDER_MARK.contains(&byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(chunks: &[&[u8]]) -> Result<Vec<String>, SplitError> {
        let mut splitter = EnvelopeSplitter::default();
        let mut documents = Vec::new();
        for chunk in chunks {
            splitter.push(chunk);
            while let Some(document) = splitter.next_document()? {
                documents.push(String::from_utf8(document).expect("utf-8"));
            }
        }
        splitter.finish()?;
        Ok(documents)
    }

    #[test]
    fn documents_are_cut_at_their_own_end_tags_whatever_the_prefix() {
        let stream = b"\xEF\xBB\xBF<?xml version=\"1.0\"?>\r\n<s:E a='>'><x/><!-- </s:E> --></s:E> <E><![CDATA[</E>]]></E>";

        let documents = split_all(&[stream]).expect("valid stream");

        assert_eq!(
            documents,
            vec![
                "<s:E a='>'><x/><!-- </s:E> --></s:E>".to_owned(),
                "<E><![CDATA[</E>]]></E>".to_owned()
            ]
        );
    }

    #[test]
    fn a_doctype_between_documents_is_rejected() {
        assert_eq!(
            split_all(&[b"<!DOCTYPE x [<!ENTITY a 'b'>]><x/>"]),
            Err(SplitError::Doctype)
        );
    }

    #[test]
    fn text_between_documents_is_rejected() {
        assert_eq!(
            split_all(&[b"<a/>junk<a/>"]),
            Err(SplitError::UnexpectedContent)
        );
    }

    #[test]
    fn a_stream_ending_inside_a_document_is_truncated() {
        assert_eq!(split_all(&[b"<a><b>"]), Err(SplitError::Truncated));
    }

    #[test]
    fn an_unfinished_document_over_the_limit_is_rejected() {
        let mut splitter = EnvelopeSplitter::with_limit(16);
        splitter.push(b"<a>0123456789abcdefgh");

        assert_eq!(splitter.next_document(), Err(SplitError::TooLarge(16)));
    }

    #[test]
    fn nesting_beyond_the_depth_cap_is_rejected() {
        let stream = "<a>".repeat(MAX_DEPTH + 1);

        assert_eq!(split_all(&[stream.as_bytes()]), Err(SplitError::TooDeep));
    }
}
