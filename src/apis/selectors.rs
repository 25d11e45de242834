//! Label and field selectors, as the Kubernetes API server parses, checks, prints and matches them.
//!
//! Owns the `labelSelector` grammar (`k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, and the
//! integer comparisons `k>n`, `k<n`), the label key and value syntax, the conversion of a `metav1.LabelSelector`
//! object into the same parsed form, the `fieldSelector` grammar with its `\,` `\=` `\\` escapes, each
//! resource's selectable fields, and the per-kind list of field labels a request may name.
//!
//! Invariants:
//! - a [`LabelSelector`] holds only requirements that passed validation, sorted by key (stably), so its string
//!   form is canonical and parses back to an equal selector;
//! - `!=` and `notin` match objects that lack the label; `in`, `=`, `>`, `<` never do;
//! - a field the object does not have selects as the empty string;
//! - a [`FieldSelector`] that went through [`FieldSelector::convert`] names only internal field labels, the
//!   keys of [`fields`];
//! - nothing here panics on request data: every refusal is a [`SelectorError`] whose message is fit to send
//!   back in a 400 `BadRequest`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

/// Why a selector was refused. Messages follow upstream's wording where clients may depend on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("found '{found}', expected: {expected}")]
    UnexpectedToken { found: String, expected: &'static str },
    #[error("unable to parse requirement: {0}")]
    Requirement(Box<SelectorError>),
    #[error("invalid label key {key:?}: {reason}")]
    InvalidLabelKey { key: String, reason: String },
    #[error("invalid label value {value:?} for key {key:?}: {reason}")]
    InvalidLabelValue { key: String, value: String, reason: String },
    #[error("invalid values for key {key:?}: {reason}")]
    InvalidValues { key: String, reason: &'static str },
    #[error("{operator:?} is not a valid label selector operator")]
    UnknownOperator { operator: String },
    #[error("malformed label selector: {0}")]
    MalformedLabelSelector(&'static str),
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    UnknownFieldTerm { selector: String, term: String },
    #[error("invalid field selector: invalid escape sequence: {0}")]
    InvalidEscape(String),
    #[error("invalid field selector: unescaped character in value: {0:?}")]
    UnescapedCharacter(char),
    #[error("field label not supported: {0}")]
    FieldLabelNotSupported(String),
    #[error("field label {0:?} not supported for batchv1.Job")]
    JobFieldLabelNotSupported(String),
    #[error("{0:?} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"")]
    UnknownFieldLabel(String),
}

// ---------------------------------------------------------------------------------------------------------------
// Label syntax

const LABEL_NAME_MAX_LEN: usize = 63;
const DNS_SUBDOMAIN_MAX_LEN: usize = 253;
const LABEL_CHARS: &str = "alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric";

/// Checks a label key: an optional DNS subdomain prefix and `/`, then a name of at most 63 characters made of
/// alphanumerics, `-`, `_` and `.`, beginning and ending with an alphanumeric.
pub fn validate_label_key(key: &str) -> Result<(), SelectorError> {
    label_key_problem(key).map_or(Ok(()), |reason| Err(SelectorError::InvalidLabelKey { key: key.to_owned(), reason }))
}

/// Checks a label value: empty, or at most 63 characters with the same alphabet as a key's name part.
pub fn validate_label_value(key: &str, value: &str) -> Result<(), SelectorError> {
    let reason = if value.len() > LABEL_NAME_MAX_LEN {
        Some(format!("must be no more than {LABEL_NAME_MAX_LEN} characters"))
    } else if !value.is_empty() && !is_label_name(value) {
        Some(format!("a label value must be empty or consist of {LABEL_CHARS}"))
    } else {
        None
    };
    reason.map_or(Ok(()), |reason| {
        Err(SelectorError::InvalidLabelValue { key: key.to_owned(), value: value.to_owned(), reason })
    })
}

fn label_key_problem(key: &str) -> Option<String> {
    let parts: Vec<&str> = key.split('/').collect();
    let name = match parts.as_slice() {
        [name] => name,
        [prefix, name] => {
            if prefix.is_empty() {
                return Some("prefix part must be non-empty".to_owned());
            }
            if let Some(problem) = dns_subdomain_problem(prefix) {
                return Some(format!("prefix part {problem}"));
            }
            name
        }
        _ => {
            return Some(format!(
                "a label key is a name of {LABEL_CHARS}, with an optional DNS subdomain prefix and '/' \
                 (e.g. 'example.com/MyName')"
            ))
        }
    };
    if name.is_empty() {
        Some("name part must be non-empty".to_owned())
    } else if name.len() > LABEL_NAME_MAX_LEN {
        Some(format!("name part must be no more than {LABEL_NAME_MAX_LEN} characters"))
    } else if !is_label_name(name) {
        Some(format!("name part must consist of {LABEL_CHARS}"))
    } else {
        None
    }
}

fn is_label_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else { return false };
    first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn dns_subdomain_problem(text: &str) -> Option<String> {
    if text.len() > DNS_SUBDOMAIN_MAX_LEN {
        return Some(format!("must be no more than {DNS_SUBDOMAIN_MAX_LEN} characters"));
    }
    let label_ok = |label: &str| {
        let bytes = label.as_bytes();
        match (bytes.first(), bytes.last()) {
            (Some(first), Some(last)) => {
                is_lower_alnum(*first)
                    && is_lower_alnum(*last)
                    && bytes.iter().all(|b| is_lower_alnum(*b) || *b == b'-')
            }
            _ => false,
        }
    };
    if text.split('.').all(label_ok) {
        None
    } else {
        Some(
            "must be a lowercase DNS subdomain: lowercase alphanumerics, '-' or '.', starting and ending with an \
             alphanumeric"
                .to_owned(),
        )
    }
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

// ---------------------------------------------------------------------------------------------------------------
// Label selectors: the parsed form

/// The operator of one label requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Equals,
    DoubleEquals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

/// One validated requirement: a key, an operator and its values (kept in the order given; printed sorted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// Builds a requirement, checking the key, the number of values the operator needs and every value.
    pub fn new(key: &str, operator: Operator, values: Vec<String>) -> Result<Self, SelectorError> {
        validate_label_key(key)?;
        let invalid = |reason| Err(SelectorError::InvalidValues { key: key.to_owned(), reason });
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                return invalid("for 'in', 'notin' operators, values set can't be empty")
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals if values.len() != 1 => {
                return invalid("exact-match compatibility requires one single value")
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                return invalid("values set must be empty for exists and does not exist")
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    return invalid("for 'gt', 'lt' operators, exactly one value is required");
                }
                if values.iter().any(|v| v.parse::<i64>().is_err()) {
                    return invalid("for 'gt', 'lt' operators, the value must be an integer");
                }
            }
            _ => {}
        }
        for value in &values {
            validate_label_value(key, value)?;
        }
        Ok(Requirement { key: key.to_owned(), operator, values })
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn operator(&self) -> Operator {
        self.operator
    }

    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether labels (looked up through `label`) satisfy this requirement.
    fn matches<'a>(&self, label: impl Fn(&str) -> Option<&'a str>) -> bool {
        let has_value = |v: &str| self.values.iter().any(|x| x == v);
        match self.operator {
            Operator::Equals | Operator::DoubleEquals | Operator::In => label(&self.key).is_some_and(has_value),
            Operator::NotEquals | Operator::NotIn => !label(&self.key).is_some_and(has_value),
            Operator::Exists => label(&self.key).is_some(),
            Operator::DoesNotExist => label(&self.key).is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let Some(actual) = label(&self.key).and_then(|v| v.parse::<i64>().ok()) else { return false };
                let Some(bound) = self.values.first().and_then(|v| v.parse::<i64>().ok()) else { return false };
                if self.operator == Operator::GreaterThan {
                    actual > bound
                } else {
                    actual < bound
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            Operator::Exists => return f.write_str(&self.key),
            Operator::DoesNotExist => return write!(f, "!{}", self.key),
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
        };
        let mut values: Vec<&str> = self.values.iter().map(String::as_str).collect();
        values.sort_unstable();
        let values = values.join(",");
        match self.operator {
            Operator::In | Operator::NotIn => write!(f, "{}{op}({values})", self.key),
            _ => write!(f, "{}{op}{values}", self.key),
        }
    }
}

/// A parsed label selector: a conjunction of requirements, or "nothing" (what a missing `metav1.LabelSelector`
/// means). The empty conjunction matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

impl LabelSelector {
    /// The selector that matches every object.
    pub fn everything() -> Self {
        LabelSelector::default()
    }

    /// The selector that matches no object; it prints as the empty string.
    pub fn nothing() -> Self {
        LabelSelector { requirements: Vec::new(), nothing: true }
    }

    /// Parses the `labelSelector` query parameter. The empty string selects everything.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let requirements = Parser::new(text).parse()?;
        Ok(Self::from_requirements(requirements))
    }

    /// Converts a `metav1.LabelSelector` object (`matchLabels`, `matchExpressions`). `None` or `null` selects
    /// nothing; an object with neither part selects everything.
    pub fn from_label_selector(selector: Option<&Value>) -> Result<Self, SelectorError> {
        let object = match selector {
            None | Some(Value::Null) => return Ok(Self::nothing()),
            Some(Value::Object(object)) => object,
            Some(_) => return Err(SelectorError::MalformedLabelSelector("a label selector must be an object")),
        };
        let mut requirements = match object.get("matchLabels") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(labels)) => equality_requirements(labels)?,
            Some(_) => return Err(SelectorError::MalformedLabelSelector("matchLabels must be an object")),
        };
        match object.get("matchExpressions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(expressions)) => {
                for expression in expressions {
                    requirements.push(expression_requirement(expression)?);
                }
            }
            Some(_) => return Err(SelectorError::MalformedLabelSelector("matchExpressions must be a list")),
        }
        Ok(Self::from_requirements(requirements))
    }

    /// A selector requiring every `key: value` of a plain label map (a Service's or ReplicationController's
    /// `spec.selector`). An empty map selects everything.
    pub fn from_match_labels(labels: &Map<String, Value>) -> Result<Self, SelectorError> {
        Ok(Self::from_requirements(equality_requirements(labels)?))
    }

    fn from_requirements(mut requirements: Vec<Requirement>) -> Self {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        LabelSelector { requirements, nothing: false }
    }

    /// Whether this selector places no constraint at all.
    pub fn is_everything(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// Whether this is the selector that matches nothing.
    pub fn is_nothing(&self) -> bool {
        self.nothing
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether a label map (`metadata.labels` in JSON form; absent, `null` or not an object means no labels)
    /// satisfies every requirement. Labels whose value is not a string count as absent.
    pub fn matches(&self, labels: Option<&Value>) -> bool {
        let labels = labels.and_then(Value::as_object);
        let label = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        !self.nothing && self.requirements.iter().all(|r| r.matches(label))
    }

    /// Whether a typed label map (`ObjectMeta::labels`) satisfies every requirement.
    pub fn matches_labels(&self, labels: &std::collections::BTreeMap<String, String>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(|key| labels.get(key).map(String::as_str)))
    }

    /// Whether an object's `metadata.labels` satisfy this selector.
    pub fn matches_object(&self, object: &Value) -> bool {
        self.matches(object.get("metadata").and_then(|m| m.get("labels")))
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, requirement) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

fn equality_requirements(labels: &Map<String, Value>) -> Result<Vec<Requirement>, SelectorError> {
    labels
        .iter()
        .map(|(key, value)| {
            let Value::String(value) = value else {
                return Err(SelectorError::MalformedLabelSelector("label values must be strings"));
            };
            Requirement::new(key, Operator::Equals, vec![value.clone()])
        })
        .collect()
}

fn expression_requirement(expression: &Value) -> Result<Requirement, SelectorError> {
    let malformed = SelectorError::MalformedLabelSelector;
    let key = expression.get("key").and_then(Value::as_str).ok_or(malformed("an expression needs a string key"))?;
    let operator = expression.get("operator").and_then(Value::as_str).unwrap_or_default();
    let operator = match operator {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        other => return Err(SelectorError::UnknownOperator { operator: other.to_owned() }),
    };
    let values = match expression.get("values") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(values)) => values
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or(malformed("expression values must be strings")))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(malformed("expression values must be a list")),
    };
    Requirement::new(key, operator, values)
}

/// The canonical string of a `metav1.LabelSelector` object as `Scale.status.selector` carries it: empty when
/// the selector is missing or invalid (upstream refuses such objects before they are stored).
pub fn selector_string(selector: Option<&Value>) -> String {
    LabelSelector::from_label_selector(selector).map(|s| s.to_string()).unwrap_or_default()
}

/// The canonical string of a plain label map used as a selector (a ReplicationController's `spec.selector`),
/// as `Scale.status.selector` carries it: sorted `k=v` pairs, empty when there are none.
pub fn set_selector_string(labels: Option<&Value>) -> String {
    match labels.and_then(Value::as_object) {
        Some(map) if !map.is_empty() => format_labels(labels),
        _ => String::new(),
    }
}

/// `metav1.FormatLabelSelector`: the canonical string of a `metav1.LabelSelector` object, `<none>` when it is
/// empty or missing and `<error>` when it is invalid.
pub fn format_label_selector(selector: Option<&Value>) -> String {
    match LabelSelector::from_label_selector(selector) {
        Err(_) => "<error>".to_owned(),
        Ok(parsed) => none_if_empty(parsed.to_string()),
    }
}

/// `labels.FormatLabels`: a plain label map as sorted `k=v` pairs joined by commas, `<none>` when empty.
pub fn format_labels(labels: Option<&Value>) -> String {
    let mut pairs: Vec<String> = labels
        .and_then(Value::as_object)
        .map(|map| {
            map.iter()
                .map(|(k, v)| match v {
                    Value::String(s) => format!("{k}={s}"),
                    other => format!("{k}={other}"),
                })
                .collect()
        })
        .unwrap_or_default();
    pairs.sort_unstable();
    none_if_empty(pairs.join(","))
}

fn none_if_empty(text: String) -> String {
    if text.is_empty() {
        "<none>".to_owned()
    } else {
        text
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Label selectors: lexer and parser

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenKind {
    End,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Token {
    kind: TokenKind,
    literal: String,
}

/// Whether `in` and `notin` are operators (after a key) or plain words (where values are expected).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

fn is_selector_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_special_symbol(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

/// Splits a label selector into tokens, ending with exactly one `End`. A NUL character ends the input, as
/// upstream's byte reader does.
fn lex(text: &str) -> Vec<Token> {
    let text = text.split('\0').next().unwrap_or_default();
    let mut tokens = Vec::new();
    let mut rest = text.trim_start_matches(is_selector_whitespace);
    while let Some(first) = rest.chars().next() {
        let (token, len) = if is_special_symbol(first) { lex_symbol(rest) } else { lex_word(rest) };
        tokens.push(token);
        rest = rest[len..].trim_start_matches(is_selector_whitespace);
    }
    tokens.push(Token { kind: TokenKind::End, literal: String::new() });
    tokens
}

fn lex_symbol(rest: &str) -> (Token, usize) {
    let (kind, len) = if rest.starts_with("==") {
        (TokenKind::DoubleEquals, 2)
    } else if rest.starts_with("!=") {
        (TokenKind::NotEquals, 2)
    } else {
        let kind = match rest.as_bytes().first() {
            Some(b'=') => TokenKind::Equals,
            Some(b'!') => TokenKind::DoesNotExist,
            Some(b'(') => TokenKind::OpenPar,
            Some(b')') => TokenKind::ClosedPar,
            Some(b',') => TokenKind::Comma,
            Some(b'>') => TokenKind::GreaterThan,
            _ => TokenKind::LessThan,
        };
        (kind, 1)
    };
    (Token { kind, literal: rest[..len].to_owned() }, len)
}

fn lex_word(rest: &str) -> (Token, usize) {
    let len = rest.find(|c| is_special_symbol(c) || is_selector_whitespace(c)).unwrap_or(rest.len());
    let literal = &rest[..len];
    let kind = match literal {
        "in" => TokenKind::In,
        "notin" => TokenKind::NotIn,
        _ => TokenKind::Identifier,
    };
    (Token { kind, literal: literal.to_owned() }, len)
}

struct Parser {
    tokens: Vec<Token>,
    position: usize,
}

const BINARY_OPERATORS: &str = "in, notin, =, ==, !=, gt, lt";

impl Parser {
    fn new(text: &str) -> Self {
        Parser { tokens: lex(text), position: 0 }
    }

    fn peek(&self, context: Context) -> (TokenKind, String) {
        let token = self.tokens.get(self.position).or(self.tokens.last());
        let (kind, literal) = token.map_or((TokenKind::End, String::new()), |t| (t.kind, t.literal.clone()));
        let kind = match (context, kind) {
            (Context::Values, TokenKind::In | TokenKind::NotIn) => TokenKind::Identifier,
            _ => kind,
        };
        (kind, literal)
    }

    fn next(&mut self, context: Context) -> (TokenKind, String) {
        let token = self.peek(context);
        if self.position + 1 < self.tokens.len() {
            self.position += 1;
        }
        token
    }

    fn parse(mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            let (kind, literal) = self.peek(Context::Values);
            match kind {
                TokenKind::Identifier | TokenKind::DoesNotExist => {
                    let requirement = self.parse_requirement().map_err(|e| SelectorError::Requirement(Box::new(e)))?;
                    requirements.push(requirement);
                    let (kind, literal) = self.next(Context::Values);
                    match kind {
                        TokenKind::End => return Ok(requirements),
                        TokenKind::Comma => {
                            let (kind, literal) = self.peek(Context::Values);
                            if kind != TokenKind::Identifier && kind != TokenKind::DoesNotExist {
                                return Err(unexpected(literal, "identifier after ','"));
                            }
                        }
                        _ => return Err(unexpected(literal, "',' or 'end of string'")),
                    }
                }
                TokenKind::End => return Ok(requirements),
                _ => return Err(unexpected(literal, "!, identifier, or 'end of string'")),
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, SelectorError> {
        let (key, inferred) = self.parse_key_and_infer_operator()?;
        if let Some(operator) = inferred {
            return Requirement::new(&key, operator, Vec::new());
        }
        let operator = self.parse_operator()?;
        let values = match operator {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        Requirement::new(&key, operator, values)
    }

    fn parse_key_and_infer_operator(&mut self) -> Result<(String, Option<Operator>), SelectorError> {
        let (mut kind, mut literal) = self.next(Context::Values);
        let mut operator = None;
        if kind == TokenKind::DoesNotExist {
            operator = Some(Operator::DoesNotExist);
            (kind, literal) = self.next(Context::Values);
        }
        if kind != TokenKind::Identifier {
            return Err(unexpected(literal, "identifier"));
        }
        validate_label_key(&literal)?;
        let (following, _) = self.peek(Context::Values);
        if matches!(following, TokenKind::End | TokenKind::Comma) && operator.is_none() {
            operator = Some(Operator::Exists);
        }
        Ok((literal, operator))
    }

    fn parse_operator(&mut self) -> Result<Operator, SelectorError> {
        let (kind, literal) = self.next(Context::KeyAndOperator);
        match kind {
            TokenKind::In => Ok(Operator::In),
            TokenKind::Equals => Ok(Operator::Equals),
            TokenKind::DoubleEquals => Ok(Operator::DoubleEquals),
            TokenKind::GreaterThan => Ok(Operator::GreaterThan),
            TokenKind::LessThan => Ok(Operator::LessThan),
            TokenKind::NotIn => Ok(Operator::NotIn),
            TokenKind::NotEquals => Ok(Operator::NotEquals),
            _ => Err(unexpected(literal, BINARY_OPERATORS)),
        }
    }

    fn parse_values(&mut self) -> Result<Vec<String>, SelectorError> {
        let (kind, literal) = self.next(Context::Values);
        if kind != TokenKind::OpenPar {
            return Err(unexpected(literal, "'('"));
        }
        let (kind, literal) = self.peek(Context::Values);
        match kind {
            TokenKind::Identifier | TokenKind::Comma => {
                let values = self.parse_identifier_list()?;
                let (kind, _) = self.next(Context::Values);
                if kind != TokenKind::ClosedPar {
                    return Err(unexpected(literal, "')'"));
                }
                Ok(values.into_iter().collect())
            }
            TokenKind::ClosedPar => {
                self.next(Context::Values);
                Ok(vec![String::new()])
            }
            _ => Err(unexpected(literal, "',', ')' or identifier")),
        }
    }

    /// The values between parentheses; empty entries (`(,a)`, `(a,)`, `(a,,b)`) stand for the empty string.
    fn parse_identifier_list(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        let mut values = BTreeSet::new();
        loop {
            let (kind, literal) = self.next(Context::Values);
            match kind {
                TokenKind::Identifier => {
                    values.insert(literal);
                    let (following, literal) = self.peek(Context::Values);
                    match following {
                        TokenKind::Comma => continue,
                        TokenKind::ClosedPar => return Ok(values),
                        _ => return Err(unexpected(literal, "',' or ')'")),
                    }
                }
                TokenKind::Comma => {
                    if values.is_empty() {
                        values.insert(String::new());
                    }
                    let (following, _) = self.peek(Context::Values);
                    if following == TokenKind::ClosedPar {
                        values.insert(String::new());
                        return Ok(values);
                    }
                    if following == TokenKind::Comma {
                        values.insert(String::new());
                    }
                }
                _ => return Err(unexpected(literal, "',', or identifier")),
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<Vec<String>, SelectorError> {
        let (kind, _) = self.peek(Context::Values);
        if matches!(kind, TokenKind::End | TokenKind::Comma) {
            return Ok(vec![String::new()]);
        }
        let (kind, literal) = self.next(Context::Values);
        if kind == TokenKind::Identifier {
            Ok(vec![literal])
        } else {
            Err(unexpected(literal, "identifier"))
        }
    }
}

fn unexpected(found: String, expected: &'static str) -> SelectorError {
    SelectorError::UnexpectedToken { found, expected }
}

// ---------------------------------------------------------------------------------------------------------------
// Field selectors

/// The operator of one field requirement; `==` parses as [`FieldOperator::Equals`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOperator {
    Equals,
    NotEquals,
}

/// One field requirement, with its value already unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub operator: FieldOperator,
    pub value: String,
}

impl FieldRequirement {
    fn matches(&self, fields: &BTreeMap<&str, String>) -> bool {
        let actual = fields.get(self.field.as_str()).map_or("", String::as_str);
        match self.operator {
            FieldOperator::Equals => actual == self.value,
            FieldOperator::NotEquals => actual != self.value,
        }
    }
}

impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            FieldOperator::Equals => "=",
            FieldOperator::NotEquals => "!=",
        };
        write!(f, "{}{op}{}", self.field, escape_field_value(&self.value))
    }
}

/// A parsed field selector: a conjunction of requirements, kept in the order of their sorted source terms.
/// The empty conjunction matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    pub fn everything() -> Self {
        FieldSelector::default()
    }

    /// Parses the `fieldSelector` query parameter. It does not check the field labels; see
    /// [`FieldSelector::convert`] or [`FieldSelector::parse_for`].
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let mut terms = split_field_terms(text);
        terms.sort_unstable();
        let mut requirements = Vec::new();
        for term in terms.into_iter().filter(|t| !t.is_empty()) {
            let unknown = || SelectorError::UnknownFieldTerm { selector: text.to_owned(), term: term.to_owned() };
            let (field, operator, raw_value) = split_field_term(term).ok_or_else(unknown)?;
            let value = unescape_field_value(raw_value)?;
            requirements.push(FieldRequirement { field: field.to_owned(), operator, value });
        }
        Ok(FieldSelector { requirements })
    }

    /// Parses and checks a selector against what `resource_plural` in `group` supports.
    pub fn parse_for(group: &str, resource_plural: &str, text: &str) -> Result<Self, SelectorError> {
        Self::parse(text)?.convert(group, resource_plural)
    }

    /// Checks every field label against the resource's supported set and renames the legacy ones to the labels
    /// [`fields`] produces (`spec.host` on pods; the `regarding.*` and `reportingController` labels of
    /// `events.k8s.io`). The first unsupported label, in term order, is the error.
    pub fn convert(self, group: &str, resource_plural: &str) -> Result<Self, SelectorError> {
        let requirements = self
            .requirements
            .into_iter()
            .map(|r| {
                let field = convert_field_label(group, resource_plural, &r.field)?;
                Ok(FieldRequirement { field: field.to_owned(), ..r })
            })
            .collect::<Result<_, SelectorError>>()?;
        Ok(FieldSelector { requirements })
    }

    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// The value an equality requirement on `field` demands, if there is one (the first, as upstream).
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.operator == FieldOperator::Equals)
            .map(|r| r.value.as_str())
    }

    /// Whether a field set (from [`fields`]) satisfies every requirement; absent fields read as "".
    pub fn matches(&self, fields: &BTreeMap<&str, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(fields))
    }

    /// Whether an object of `resource_plural` in `group` satisfies this (converted) selector.
    pub fn matches_object(&self, group: &str, resource_plural: &str, object: &Value) -> bool {
        self.is_everything() || self.matches(&fields(group, resource_plural, object))
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, requirement) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

/// Splits on commas not escaped by a backslash; the empty selector has no terms.
fn split_field_terms(text: &str) -> Vec<&str> {
    if text.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(&text[start..i]);
            start = i + 1;
        }
    }
    terms.push(&text[start..]);
    terms
}

/// Splits a term at its first operator (`!=`, `==` or `=`, tried in that order at each position).
fn split_field_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    term.char_indices().find_map(|(i, _)| {
        let rest = &term[i..];
        [("!=", FieldOperator::NotEquals), ("==", FieldOperator::Equals), ("=", FieldOperator::Equals)]
            .into_iter()
            .find(|(op, _)| rest.starts_with(op))
            .map(|(op, operator)| (&term[..i], operator, &rest[op.len()..]))
    })
}

/// Escapes `\`, `,` and `=` in a field selector value.
pub fn escape_field_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Reverses [`escape_field_value`]; a bare `,` or `=` or any other escape is an error.
pub fn unescape_field_value(raw: &str) -> Result<String, SelectorError> {
    let mut value = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(next @ ('\\' | ',' | '=')) => value.push(next),
                Some(next) => return Err(SelectorError::InvalidEscape(format!("\\{next}"))),
                None => return Err(SelectorError::InvalidEscape("\\".to_owned())),
            },
            ',' | '=' => return Err(SelectorError::UnescapedCharacter(c)),
            other => value.push(other),
        }
    }
    Ok(value)
}

// ---------------------------------------------------------------------------------------------------------------
// Selectable fields, per resource

const EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
    "metadata.namespace",
    "metadata.name",
];

const POD_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
];

/// The field label a request may name, mapped to the label [`fields`] uses, or the refusal upstream gives.
fn convert_field_label<'a>(group: &str, resource_plural: &str, label: &'a str) -> Result<&'a str, SelectorError> {
    let listed = |allowed: &[&str]| {
        if allowed.contains(&label) {
            Ok(label)
        } else {
            Err(SelectorError::FieldLabelNotSupported(label.to_owned()))
        }
    };
    match (group, resource_plural) {
        ("", "pods") if label == "spec.host" => Ok("spec.nodeName"),
        ("", "pods") => listed(POD_FIELDS),
        ("", "nodes") => listed(&["metadata.name", "spec.unschedulable"]),
        ("", "namespaces") => listed(&["status.phase", "metadata.name"]),
        ("", "replicationcontrollers") => listed(&["metadata.name", "metadata.namespace", "status.replicas"]),
        ("", "events") => listed(EVENT_FIELDS),
        ("", "secrets") => listed(&["type", "metadata.namespace", "metadata.name"]),
        ("", "services") => listed(&["metadata.namespace", "metadata.name", "spec.clusterIP", "spec.type"]),
        ("batch", "jobs") => match label {
            "metadata.name" | "metadata.namespace" | "status.successful" => Ok(label),
            _ => Err(SelectorError::JobFieldLabelNotSupported(label.to_owned())),
        },
        ("certificates.k8s.io", "certificatesigningrequests") => listed(&["metadata.name", "spec.signerName"]),
        ("events.k8s.io", "events") => match label {
            "regarding.kind" => Ok("involvedObject.kind"),
            "regarding.namespace" => Ok("involvedObject.namespace"),
            "regarding.name" => Ok("involvedObject.name"),
            "regarding.uid" => Ok("involvedObject.uid"),
            "regarding.apiVersion" => Ok("involvedObject.apiVersion"),
            "regarding.resourceVersion" => Ok("involvedObject.resourceVersion"),
            "regarding.fieldPath" => Ok("involvedObject.fieldPath"),
            "reportingController" => Ok("reportingComponent"),
            "reason" | "source" | "type" | "metadata.namespace" | "metadata.name" => Ok(label),
            _ => Err(SelectorError::FieldLabelNotSupported(label.to_owned())),
        },
        _ => match label {
            "metadata.name" | "metadata.namespace" => Ok(label),
            _ => Err(SelectorError::UnknownFieldLabel(label.to_owned())),
        },
    }
}

/// The selectable fields of an object of `resource_plural` in `group`, keyed by internal field label:
/// `metadata.name` always, `metadata.namespace` except for namespaces and nodes, and each kind's own fields as
/// upstream's registry exposes them (values as Go formats them: integers in decimal, booleans as
/// `true`/`false`, absent strings as "").
pub fn fields(group: &str, resource_plural: &str, object: &Value) -> BTreeMap<&'static str, String> {
    let mut set = BTreeMap::new();
    set.insert("metadata.name", field_text(object, &["metadata", "name"]));
    let cluster_scoped = matches!((group, resource_plural), ("", "namespaces" | "nodes"))
        || (group, resource_plural) == ("certificates.k8s.io", "certificatesigningrequests");
    if !cluster_scoped {
        set.insert("metadata.namespace", field_text(object, &["metadata", "namespace"]));
    }
    match (group, resource_plural) {
        ("", "pods") => insert_pod_fields(&mut set, object),
        ("", "events") => insert_event_fields(&mut set, &EventShape::CORE, object),
        ("events.k8s.io", "events") => insert_event_fields(&mut set, &EventShape::EVENTS_V1, object),
        ("", "nodes") => {
            set.insert("spec.unschedulable", field_bool(object, &["spec", "unschedulable"]));
        }
        ("", "namespaces") => {
            set.insert("status.phase", field_text(object, &["status", "phase"]));
        }
        ("", "secrets") => {
            set.insert("type", field_text(object, &["type"]));
        }
        ("", "services") => {
            set.insert("spec.clusterIP", field_text(object, &["spec", "clusterIP"]));
            set.insert("spec.type", field_text(object, &["spec", "type"]));
        }
        ("", "replicationcontrollers") | ("apps", "replicasets") => {
            set.insert("status.replicas", field_integer(object, &["status", "replicas"]));
        }
        ("batch", "jobs") => {
            set.insert("status.successful", field_integer(object, &["status", "succeeded"]));
        }
        ("certificates.k8s.io", "certificatesigningrequests") => {
            set.insert("spec.signerName", field_text(object, &["spec", "signerName"]));
        }
        _ => {}
    }
    set
}

fn insert_pod_fields(set: &mut BTreeMap<&'static str, String>, pod: &Value) {
    for (label, path) in [
        ("spec.nodeName", ["spec", "nodeName"]),
        ("spec.restartPolicy", ["spec", "restartPolicy"]),
        ("spec.schedulerName", ["spec", "schedulerName"]),
        ("spec.serviceAccountName", ["spec", "serviceAccountName"]),
        ("status.phase", ["status", "phase"]),
        ("status.nominatedNodeName", ["status", "nominatedNodeName"]),
    ] {
        set.insert(label, field_text(pod, &path));
    }
    set.insert("spec.hostNetwork", field_bool(pod, &["spec", "hostNetwork"]));
    let first_ip = pod
        .pointer("/status/podIPs/0/ip")
        .and_then(Value::as_str)
        .or_else(|| pod.pointer("/status/podIP").and_then(Value::as_str))
        .unwrap_or_default();
    set.insert("status.podIP", first_ip.to_owned());
}

/// Where an Event's selectable fields live in each of its two JSON forms.
struct EventShape {
    involved_object: &'static str,
    reporting_component: &'static str,
    source: &'static str,
}

impl EventShape {
    const CORE: EventShape =
        EventShape { involved_object: "involvedObject", reporting_component: "reportingComponent", source: "source" };
    const EVENTS_V1: EventShape = EventShape {
        involved_object: "regarding",
        reporting_component: "reportingController",
        source: "deprecatedSource",
    };
}

fn insert_event_fields(set: &mut BTreeMap<&'static str, String>, shape: &EventShape, event: &Value) {
    let involved = shape.involved_object;
    for (label, key) in [
        ("involvedObject.kind", "kind"),
        ("involvedObject.namespace", "namespace"),
        ("involvedObject.name", "name"),
        ("involvedObject.uid", "uid"),
        ("involvedObject.apiVersion", "apiVersion"),
        ("involvedObject.resourceVersion", "resourceVersion"),
        ("involvedObject.fieldPath", "fieldPath"),
    ] {
        set.insert(label, field_text(event, &[involved, key]));
    }
    let reporting = field_text(event, &[shape.reporting_component]);
    let component = field_text(event, &[shape.source, "component"]);
    set.insert("source", if component.is_empty() { reporting.clone() } else { component });
    set.insert("reportingComponent", reporting);
    set.insert("reason", field_text(event, &["reason"]));
    set.insert("type", field_text(event, &["type"]));
}

fn lookup<'a>(object: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(object, |v, key| v.get(key))
}

/// A field's value as upstream formats it; null, absent and composite values read as "".
fn field_text(object: &Value, path: &[&str]) -> String {
    match lookup(object, path) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

fn field_bool(object: &Value, path: &[&str]) -> String {
    lookup(object, path).and_then(Value::as_bool).unwrap_or(false).to_string()
}

fn field_integer(object: &Value, path: &[&str]) -> String {
    lookup(object, path).and_then(Value::as_i64).unwrap_or(0).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn labels(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    fn matches(selector: &str, label_map: Value) -> bool {
        LabelSelector::parse(selector).expect("selector parses").matches(Some(&label_map))
    }

    #[test]
    fn label_selector_table_parses_to_canonical_form() {
        let cases = [
            ("", ""),
            ("app=web", "app=web"),
            ("app==web", "app==web"),
            ("app!=web", "app!=web"),
            ("  app = web  ", "app=web"),
            ("tier in (fe, be)", "tier in (be,fe)"),
            ("tier notin (fe,be,fe)", "tier notin (be,fe)"),
            ("tier in ()", "tier in ()"),
            ("tier in (,a)", "tier in (,a)"),
            ("app", "app"),
            ("!app", "!app"),
            ("! app", "!app"),
            ("x>5,x<10", "x>5,x<10"),
            ("b=1,a=2", "a=2,b=1"),
            ("app=", "app="),
            ("in=notin", "in=notin"),
            ("example.com/app=web,kubernetes.io/role", "example.com/app=web,kubernetes.io/role"),
            ("env in (prod),app!=", "app!=,env in (prod)"),
        ];
        for (input, canonical) in cases {
            let parsed = LabelSelector::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(parsed.to_string(), canonical, "{input:?}");
            assert_eq!(LabelSelector::parse(canonical).map(|s| s.to_string()), Ok(canonical.to_owned()));
        }
    }

    #[test]
    fn label_selector_table_refuses_bad_syntax() {
        let cases = [
            ("app=web,", "found '', expected: identifier after ','"),
            (",app", "found ',', expected: !, identifier, or 'end of string'"),
            ("app web", "unable to parse requirement: found 'web', expected: in, notin, =, ==, !=, gt, lt"),
            ("app in a", "unable to parse requirement: found 'a', expected: '('"),
            ("app in (a", "unable to parse requirement: found '', expected: ',' or ')'"),
            ("app=a=b", "found '=', expected: ',' or 'end of string'"),
            ("!app=x", "found '=', expected: ',' or 'end of string'"),
            (
                "x>a",
                "unable to parse requirement: invalid values for key \"x\": \
                 for 'gt', 'lt' operators, the value must be an integer",
            ),
            ("=x", "found '=', expected: !, identifier, or 'end of string'"),
            ("app in (a b)", "unable to parse requirement: found 'b', expected: ',' or ')'"),
        ];
        for (input, message) in cases {
            let error = LabelSelector::parse(input).expect_err(input);
            assert_eq!(error.to_string(), message, "{input:?}");
        }
    }

    #[test]
    fn label_keys_and_values_are_validated_as_upstream() {
        for bad in ["App_", "-app", "a/b/c", "/name", "Example.com/app", "a".repeat(64).as_str(), "ex_ample.com/a"] {
            let error = LabelSelector::parse(&format!("{bad}=x")).expect_err(bad);
            assert!(error.to_string().starts_with("unable to parse requirement: invalid label key"), "{error}");
        }
        for bad in ["-x", "x_", "a b", "x".repeat(64).as_str(), "é"] {
            assert!(LabelSelector::parse(&format!("app in ({bad})")).is_err(), "{bad:?}");
        }
        for good in ["a", "A-b_c.d", "example.com/x", "a.b-c.d/Z9", &"a".repeat(63)] {
            assert!(validate_label_key(good).is_ok(), "{good}");
        }
        for good in ["", "a", "A-b_c.d", &"a".repeat(63)] {
            assert!(validate_label_value("k", good).is_ok(), "{good}");
        }
    }

    #[test]
    fn matching_follows_upstream_semantics_for_missing_labels() {
        let with = json!({"app": "web", "tier": "fe", "n": "7"});
        let without = json!({});
        let cases = [
            ("app=web", true, false),
            ("app!=web", false, true),
            ("app!=db", true, true),
            ("tier in (fe,be)", true, false),
            ("tier notin (fe)", false, true),
            ("app", true, false),
            ("!app", false, true),
            ("n>5", true, false),
            ("n<5", false, false),
            ("", true, true),
            ("app=web,tier=be", false, false),
        ];
        for (selector, on_labelled, on_unlabelled) in cases {
            assert_eq!(matches(selector, with.clone()), on_labelled, "{selector} on labelled");
            assert_eq!(matches(selector, without.clone()), on_unlabelled, "{selector} on unlabelled");
        }
        let object = json!({"metadata": {"name": "web-0", "labels": {"app": "web"}}});
        assert!(LabelSelector::parse("app=web").expect("parses").matches_object(&object));
        assert!(!LabelSelector::parse("app=web").expect("parses").matches_object(&json!({})));
    }

    #[test]
    fn metav1_label_selector_converts_and_prints() {
        let selector = json!({
            "matchLabels": {"app": "nginx"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["fe"]},
                {"key": "env", "operator": "NotIn", "values": ["qa", "dev"]},
                {"key": "canary", "operator": "DoesNotExist"},
            ],
        });
        let parsed = LabelSelector::from_label_selector(Some(&selector)).expect("converts");
        assert_eq!(parsed.to_string(), "app=nginx,!canary,env notin (dev,qa),tier in (fe)");
        let brief = json!({
            "matchLabels": {"app": "nginx"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe"]}],
        });
        let brief = LabelSelector::from_label_selector(Some(&brief)).map(|s| s.to_string());
        assert_eq!(brief, Ok("app=nginx,tier in (fe)".to_owned()));
        assert!(parsed.matches(Some(&json!({"app": "nginx", "tier": "fe", "env": "prod"}))));
        assert!(!parsed.matches(Some(&json!({"app": "nginx", "tier": "fe", "canary": "1"}))));
        assert_eq!(selector_string(Some(&selector)), "app=nginx,!canary,env notin (dev,qa),tier in (fe)");
        assert_eq!(selector_string(None), "");
        assert_eq!(selector_string(Some(&json!({"matchLabels": {"a": "b c"}}))), "");

        let everything = LabelSelector::from_label_selector(Some(&json!({}))).expect("converts");
        assert!(everything.is_everything() && everything.matches(None));
        let nothing = LabelSelector::from_label_selector(None).expect("converts");
        assert!(nothing.is_nothing() && !nothing.matches(Some(&json!({"app": "x"}))));
        assert_eq!(nothing.to_string(), "");
        assert!(LabelSelector::from_label_selector(Some(&Value::Null)).expect("converts").is_nothing());

        assert_eq!(format_label_selector(Some(&json!({}))), "<none>");
        assert_eq!(format_label_selector(None), "<none>");
        assert_eq!(format_label_selector(Some(&json!({"matchLabels": {"app": "nginx"}}))), "app=nginx");
        assert_eq!(format_label_selector(Some(&json!({"matchLabels": {"bad key": "x"}}))), "<error>");
        assert_eq!(format_labels(Some(&json!({"b": "2", "a": "1"}))), "a=1,b=2");
        assert_eq!(format_labels(None), "<none>");
        let service_selector = labels(json!({"tier": "fe", "app": "web"}));
        let from_map = LabelSelector::from_match_labels(&service_selector).expect("valid labels");
        assert_eq!(from_map.to_string(), "app=web,tier=fe");
        assert!(LabelSelector::from_match_labels(&Map::new()).expect("empty").is_everything());
    }

    #[test]
    fn metav1_label_selector_refuses_bad_expressions() {
        let cases = [
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}),
                "\"Gt\" is not a valid label selector operator",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}),
                "invalid values for key \"a\": for 'in', 'notin' operators, values set can't be empty",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
                "invalid values for key \"a\": values set must be empty for exists and does not exist",
            ),
            (json!({"matchLabels": {"a": 1}}), "malformed label selector: label values must be strings"),
            (json!("app=x"), "malformed label selector: a label selector must be an object"),
        ];
        for (selector, message) in cases {
            let error = LabelSelector::from_label_selector(Some(&selector)).expect_err("refused");
            assert_eq!(error.to_string(), message);
        }
    }

    #[test]
    fn field_selectors_kubectl_sends_parse_and_match() {
        let event = json!({
            "kind": "Event",
            "metadata": {"name": "web-0.17a", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web-0", "namespace": "default",
                               "uid": "ce9043b4-7940-419b-8ee9-8a1bd2add1ee", "apiVersion": "v1"},
            "reason": "Scheduled", "type": "Normal", "source": {"component": "default-scheduler"},
        });
        let describe_pod = "involvedObject.name=web-0,involvedObject.namespace=default,\
                            involvedObject.uid=ce9043b4-7940-419b-8ee9-8a1bd2add1ee";
        let selector = FieldSelector::parse_for("", "events", describe_pod).expect("supported");
        assert!(selector.matches_object("", "events", &event));
        let describe_deployment = "involvedObject.namespace=default,involvedObject.kind=Deployment,\
                                   involvedObject.uid=35027f01,involvedObject.name=nginx";
        let selector = FieldSelector::parse_for("", "events", describe_deployment).expect("supported");
        assert!(!selector.matches_object("", "events", &event));

        let deployment = json!({"metadata": {"name": "nginx", "namespace": "default"}});
        let by_name = FieldSelector::parse_for("apps", "deployments", "metadata.name=nginx").expect("supported");
        assert_eq!(by_name.requires_exact_match("metadata.name"), Some("nginx"));
        assert!(by_name.matches_object("apps", "deployments", &deployment));
        assert!(!by_name.matches_object("apps", "deployments", &json!({"metadata": {"name": "web"}})));
        assert!(FieldSelector::parse_for("", "pods", "").expect("empty").is_everything());
    }

    #[test]
    fn field_selector_table_parses_escapes_and_operators() {
        let cases = [
            ("a=b", "a=b"),
            ("a==b", "a=b"),
            ("a!=b", "a!=b"),
            ("b=2,a=1", "a=1,b=2"),
            ("a=x\\,y\\=z\\\\", "a=x\\,y\\=z\\\\"),
            ("a=", "a="),
            ("a=b,,", "a=b"),
        ];
        for (input, canonical) in cases {
            let parsed = FieldSelector::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(parsed.to_string(), canonical, "{input:?}");
        }
        let parsed = FieldSelector::parse("a=x\\,y").expect("parses");
        assert_eq!(parsed.requirements()[0].value, "x,y");

        let errors = [
            ("abc", "invalid selector: 'abc'; can't understand 'abc'"),
            ("a=b\\c", "invalid field selector: invalid escape sequence: \\c"),
            ("a=b\\", "invalid field selector: invalid escape sequence: \\"),
            ("a=b=c", "invalid field selector: unescaped character in value: '='"),
        ];
        for (input, message) in errors {
            assert_eq!(FieldSelector::parse(input).expect_err(input).to_string(), message);
        }
    }

    #[test]
    fn unsupported_field_labels_are_refused_with_upstream_messages() {
        let cases = [
            ("", "pods", "spec.foo=x", "field label not supported: spec.foo"),
            ("", "namespaces", "metadata.namespace=x", "field label not supported: metadata.namespace"),
            (
                "apps",
                "deployments",
                "spec.replicas=1",
                "\"spec.replicas\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
            ),
            (
                "apps",
                "replicasets",
                "status.replicas=0",
                "\"status.replicas\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
            ),
            ("batch", "jobs", "spec.parallelism=1", "field label \"spec.parallelism\" not supported for batchv1.Job"),
        ];
        for (group, resource, selector, message) in cases {
            let error = FieldSelector::parse_for(group, resource, selector).expect_err(selector);
            assert_eq!(error.to_string(), message);
        }
        for (group, resource, selector) in [
            ("", "pods", "spec.nodeName=n1,status.phase!=Running,spec.hostNetwork=false"),
            ("", "nodes", "spec.unschedulable=true"),
            ("", "secrets", "type=Opaque"),
            ("", "namespaces", "status.phase=Active"),
            ("", "services", "spec.type=ClusterIP"),
            ("batch", "jobs", "status.successful=1"),
            ("events.k8s.io", "events", "regarding.name=web-0,reportingController=kubelet"),
            ("", "configmaps", "metadata.namespace=default"),
        ] {
            assert!(FieldSelector::parse_for(group, resource, selector).is_ok(), "{group}/{resource} {selector}");
        }
    }

    #[test]
    fn selectable_fields_read_each_kind_and_default_missing_values() {
        let pod = json!({
            "metadata": {"name": "web-0", "namespace": "default"},
            "spec": {"nodeName": "node-1", "restartPolicy": "Always", "hostNetwork": true},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.7"}]},
        });
        let set = fields("", "pods", &pod);
        assert_eq!(set["spec.nodeName"], "node-1");
        assert_eq!(set["spec.hostNetwork"], "true");
        assert_eq!(set["status.podIP"], "10.0.0.7");
        assert_eq!(set["spec.schedulerName"], "");
        assert_eq!(set.len(), POD_FIELDS.len());

        let by_host = FieldSelector::parse_for("", "pods", "spec.host=node-1").expect("legacy label");
        assert_eq!(by_host.to_string(), "spec.nodeName=node-1");
        assert!(by_host.matches_object("", "pods", &pod));
        let unscheduled = FieldSelector::parse_for("", "pods", "spec.nodeName=").expect("supported");
        assert!(!unscheduled.matches_object("", "pods", &pod));
        assert!(unscheduled.matches_object("", "pods", &json!({"metadata": {"name": "p"}})));

        let node = fields("", "nodes", &json!({"metadata": {"name": "n1"}}));
        assert_eq!(node.get("spec.unschedulable").map(String::as_str), Some("false"));
        assert!(!node.contains_key("metadata.namespace"));
        let job = fields("batch", "jobs", &json!({"metadata": {"name": "j"}, "status": {"succeeded": 2}}));
        assert_eq!(job["status.successful"], "2");
        let rs = fields("apps", "replicasets", &json!({"metadata": {"name": "r"}}));
        assert_eq!(rs["status.replicas"], "0");

        let new_event = json!({
            "metadata": {"name": "e", "namespace": "default"},
            "regarding": {"kind": "Pod", "name": "web-0"},
            "reportingController": "kubelet", "reason": "Pulled", "type": "Normal",
        });
        let set = fields("events.k8s.io", "events", &new_event);
        assert_eq!(set["involvedObject.name"], "web-0");
        assert_eq!(set["source"], "kubelet");
        assert_eq!(set["reportingComponent"], "kubelet");
        let selector = FieldSelector::parse_for("events.k8s.io", "events", "regarding.kind=Pod").expect("ok");
        assert!(selector.matches_object("events.k8s.io", "events", &new_event));
    }

    fn label_key() -> impl Strategy<Value = String> {
        let name = "[A-Za-z0-9]([-A-Za-z0-9_.]{0,10}[A-Za-z0-9])?";
        prop_oneof![
            name.prop_map(|n| n.to_string()),
            ("[a-z0-9]{1,5}(\\.[a-z0-9]{1,5}){0,2}", name).prop_map(|(p, n)| format!("{p}/{n}")),
        ]
    }

    fn label_value() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), "[A-Za-z0-9]([-A-Za-z0-9_.]{0,8}[A-Za-z0-9])?".prop_map(String::from)]
    }

    fn requirement() -> impl Strategy<Value = Requirement> {
        let operator = prop_oneof![
            Just(Operator::Equals),
            Just(Operator::DoubleEquals),
            Just(Operator::NotEquals),
            Just(Operator::In),
            Just(Operator::NotIn),
            Just(Operator::Exists),
            Just(Operator::DoesNotExist),
            Just(Operator::GreaterThan),
            Just(Operator::LessThan),
        ];
        (label_key(), operator, proptest::collection::btree_set(label_value(), 1..4), 0i64..100).prop_map(
            |(key, operator, values, number)| {
                let values: Vec<String> = match operator {
                    Operator::In | Operator::NotIn => values.into_iter().collect(),
                    Operator::Exists | Operator::DoesNotExist => Vec::new(),
                    Operator::GreaterThan | Operator::LessThan => vec![number.to_string()],
                    _ => values.into_iter().take(1).collect(),
                };
                Requirement::new(&key, operator, values).expect("generated requirements are valid")
            },
        )
    }

    proptest! {
        #[test]
        fn canonical_label_selectors_parse_back_to_themselves(
            requirements in proptest::collection::vec(requirement(), 0..5),
        ) {
            let selector = LabelSelector::from_requirements(requirements);
            let text = selector.to_string();
            prop_assert_eq!(LabelSelector::parse(&text).map(|s| s.to_string()), Ok(text));
        }

        #[test]
        fn parsed_selectors_match_like_their_requirements(
            requirements in proptest::collection::vec(requirement(), 1..4),
            present in proptest::collection::btree_map(label_key(), label_value(), 0..4),
        ) {
            let selector = LabelSelector::from_requirements(requirements.clone());
            let reparsed = LabelSelector::parse(&selector.to_string()).expect("canonical form parses");
            let map: Value =
                present.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<Map<_, _>>().into();
            let model = requirements.iter().all(|r| {
                let actual = present.get(&r.key).map(String::as_str);
                match r.operator {
                    Operator::Equals | Operator::DoubleEquals | Operator::In => {
                        actual.is_some_and(|a| r.values.iter().any(|v| v == a))
                    }
                    Operator::NotEquals | Operator::NotIn => actual.is_none_or(|a| r.values.iter().all(|v| v != a)),
                    Operator::Exists => actual.is_some(),
                    Operator::DoesNotExist => actual.is_none(),
                    Operator::GreaterThan | Operator::LessThan => false,
                }
            });
            let has_comparison =
                requirements.iter().any(|r| matches!(r.operator, Operator::GreaterThan | Operator::LessThan));
            prop_assert_eq!(reparsed.matches(Some(&map)), selector.matches(Some(&map)));
            if !has_comparison {
                prop_assert_eq!(selector.matches(Some(&map)), model);
            }
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,40}") {
            let _ = LabelSelector::parse(&text);
            let _ = FieldSelector::parse_for("", "pods", &text);
        }

        #[test]
        fn arbitrary_selector_like_text_never_panics(text in "[a-z!=(),<> \\\\]{0,30}") {
            if let Ok(selector) = LabelSelector::parse(&text) {
                prop_assert!(LabelSelector::parse(&selector.to_string()).is_ok());
            }
            let _ = FieldSelector::parse(&text);
        }

        #[test]
        fn escaped_field_values_round_trip(value in "\\PC{0,20}", name in "[a-z.]{1,12}") {
            let text = format!("{name}={}", escape_field_value(&value));
            let parsed = FieldSelector::parse(&text).expect("escaped values parse");
            prop_assert_eq!(&parsed.requirements()[0].value, &value);
            prop_assert_eq!(parsed.to_string(), text);
        }
    }
}
