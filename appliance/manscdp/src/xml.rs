//! A small element tree over quick-xml, read from already-decoded text.
//!
//! MANSCDP documents are a few kilobytes and shallow, and devices vary the order and case of
//! elements, so a tree with case-insensitive lookup is simpler and more forgiving than driving
//! quick-xml's event stream per message type. Depth is capped: nothing a device sends nests deeply,
//! and a cap keeps hostile input from building a tree whose recursive drop could exhaust the stack.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use crate::error::ManscdpError;

/// Deeper than any MANSCDP document (the deepest, `Alarm/Info/AlarmTypeParam/EventType`, is 4).
const MAX_DEPTH: usize = 32;

#[derive(Debug)]
pub(crate) struct Element {
    pub name: String,
    attributes: Vec<(String, String)>,
    text: String,
    children: Vec<Element>,
}

impl Element {
    /// The first child with this name, ignoring ASCII case.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children
            .iter()
            .find(|child| child.name.eq_ignore_ascii_case(name))
    }

    /// All children with this name, ignoring ASCII case.
    pub fn children<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children
            .iter()
            .filter(move |child| child.name.eq_ignore_ascii_case(name))
    }

    /// The element's own text (character data and CDATA), trimmed.
    pub fn text(&self) -> &str {
        self.text.trim()
    }

    /// An attribute's value, name ignoring ASCII case.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Parses `document` and returns its root element. Anything after the root is ignored: devices
/// written in C sometimes send a trailing NUL or other junk after the closing tag.
pub(crate) fn parse(document: &str) -> Result<Element, ManscdpError> {
    let mut reader = Reader::from_str(document);
    let mut stack: Vec<Element> = Vec::new();
    loop {
        let event = reader.read_event().map_err(|error| {
            ManscdpError::Xml(format!(
                "{error} (at byte {} of the decoded text)",
                reader.error_position()
            ))
        })?;
        match event {
            Event::Start(start) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(ManscdpError::Xml(format!(
                        "elements nested deeper than {MAX_DEPTH}"
                    )));
                }
                stack.push(element(&start)?);
            }
            Event::Empty(start) => {
                let empty = element(&start)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(empty),
                    None => return Ok(empty),
                }
            }
            Event::End(_) => {
                // quick-xml has already checked that the end tag matches the open one.
                let Some(done) = stack.pop() else {
                    return Err(ManscdpError::Xml("end tag without a start tag".into()));
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => return Ok(done),
                }
            }
            Event::Text(text) => {
                let text = text
                    .unescape()
                    .map_err(|error| ManscdpError::Xml(error.to_string()))?;
                append_text(&mut stack, &text)?;
            }
            Event::CData(cdata) => {
                let text = cdata
                    .decode()
                    .map_err(|error| ManscdpError::Xml(error.to_string()))?;
                append_text(&mut stack, &text)?;
            }
            Event::Eof => {
                return Err(ManscdpError::Xml(match stack.last() {
                    Some(open) => format!("document ends inside <{}>", open.name),
                    None => "no root element".into(),
                }));
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
}

fn element(start: &BytesStart<'_>) -> Result<Element, ManscdpError> {
    let mut attributes = Vec::new();
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|error| ManscdpError::Xml(error.to_string()))?;
        let value = attribute
            .unescape_value()
            .map_err(|error| ManscdpError::Xml(error.to_string()))?;
        attributes.push((
            String::from_utf8_lossy(attribute.key.local_name().as_ref()).into_owned(),
            value.into_owned(),
        ));
    }
    Ok(Element {
        // Namespace prefixes are dropped: nobody qualifies MANSCDP names, but a prefix must not
        // hide an element either.
        name: String::from_utf8_lossy(start.local_name().as_ref()).into_owned(),
        attributes,
        text: String::new(),
        children: Vec::new(),
    })
}

fn append_text(stack: &mut [Element], text: &str) -> Result<(), ManscdpError> {
    match stack.last_mut() {
        Some(open) => {
            open.text.push_str(text);
            Ok(())
        }
        None if text.trim().is_empty() => Ok(()),
        None => Err(ManscdpError::Xml("text outside the root element".into())),
    }
}
