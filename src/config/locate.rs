//! Finds the line of a setting in the YAML text, for errors found after deserialization.
//!
//! serde gives us values without positions; cross-field checks (a mechanism no passdb can serve,
//! two listeners on one path) still must name a line. This walks the YAML events once more with
//! their markers and answers "where is `passdbs[1].scheme`?".

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// One step of a setting's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

#[derive(Debug)]
enum Node {
    Scalar(usize),
    Seq(usize, Vec<Node>),
    Map(usize, Vec<(String, usize, Node)>),
}

impl Node {
    fn line(&self) -> usize {
        match self {
            Node::Scalar(l) | Node::Seq(l, _) | Node::Map(l, _) => *l,
        }
    }
}

#[derive(Default)]
struct Builder {
    stack: Vec<(Node, Option<(String, usize)>)>,
    pending_key: Vec<Option<(String, usize)>>,
    root: Option<Node>,
}

impl Builder {
    fn push_value(&mut self, node: Node, scalar_text: Option<String>, line: usize) {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some((Node::Seq(_, items), _)) => items.push(node),
            Some((Node::Map(_, entries), _)) => match self.pending_key.last_mut() {
                Some(slot @ None) => *slot = Some((scalar_text.unwrap_or_default(), line)),
                Some(slot @ Some(_)) => {
                    if let Some((key, key_line)) = slot.take() {
                        entries.push((key, key_line, node));
                    }
                }
                None => {}
            },
            Some((Node::Scalar(_), _)) => {}
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        match ev {
            Event::Scalar(text, ..) => self.push_value(Node::Scalar(line), Some(text), line),
            Event::Alias(_) => self.push_value(Node::Scalar(line), None, line),
            Event::SequenceStart(..) => self.stack.push((Node::Seq(line, Vec::new()), None)),
            Event::MappingStart(..) => {
                self.stack.push((Node::Map(line, Vec::new()), None));
                self.pending_key.push(None);
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((node, _)) = self.stack.pop() {
                    if matches!(node, Node::Map(..)) {
                        self.pending_key.pop();
                    }
                    let l = node.line();
                    self.push_value(node, None, l);
                }
            }
            _ => {}
        }
    }
}

/// The 1-based line of the setting at `path`, or of its nearest existing parent.
pub(crate) fn line_of(yaml: &str, path: &[Seg]) -> Option<usize> {
    let mut builder = Builder::default();
    Parser::new_from_str(yaml).load(&mut builder, false).ok()?;
    let mut node = builder.root.as_ref()?;
    let mut line = None;
    for seg in path {
        let next = match (seg, node) {
            (Seg::Key(k), Node::Map(_, entries)) => entries.iter().find(|(key, ..)| key == k).map(|(_, l, n)| {
                line = Some(*l);
                n
            }),
            (Seg::Index(i), Node::Seq(_, items)) => items.get(*i).inspect(|n| line = Some(n.line())),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => break,
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Seg {
        Seg::Key(s.into())
    }

    #[test]
    fn finds_block_and_flow_settings() {
        let yaml = "auth:\n  mechanisms: [plain]\n  failure_delay: 2s\npassdbs:\n  - { driver: passwd-file, path: x }\n  - driver: static\n    scheme: PLAIN\n";
        assert_eq!(line_of(yaml, &[k("auth"), k("failure_delay")]), Some(3));
        assert_eq!(line_of(yaml, &[k("passdbs"), Seg::Index(0), k("path")]), Some(5));
        assert_eq!(line_of(yaml, &[k("passdbs"), Seg::Index(1), k("scheme")]), Some(7));
        assert_eq!(line_of(yaml, &[k("passdbs"), Seg::Index(1), k("nope")]), Some(6));
        assert_eq!(line_of(yaml, &[k("missing")]), None);
        assert_eq!(line_of("{ bad", &[k("x")]), None);
    }
}
