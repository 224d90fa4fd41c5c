//! Conditions: CEL expressions (the `cel` crate, cel-rust) that a filter set may carry, checked
//! on an event after its type, index and glob clauses matched.
//!
//! What an expression sees is bound here, from our event model ([`Bindings`]): every context
//! attribute and extension by name with its CEL type, and `data` (decoded JSON, or bytes).
//!
//! Cost: cel-rust has no cost limit of its own, so [`FilterCondition::compile`] bounds what an
//! expression may be, and with it what one evaluation may cost:
//! - at most [`MAX_CONDITION_BYTES`] of text, [`MAX_CONDITION_NODES`] nodes once macros are
//!   expanded, and [`MAX_CONDITION_DEPTH`] levels of nesting;
//! - macros (`all`, `exists`, `exists_one`, `map`, `filter`) do not nest: neither the list a
//!   macro iterates nor its body holds another macro, and the body sees only the macro's own
//!   variables and literals (no attribute, no `data`);
//! - the pattern of `matches` is a string literal.
//!
//! Without loops, a node's work is at most linear in the size of the values below it, and those
//! are built from the event and literals; a macro's body runs once per element and sees only
//! that element. So one evaluation does work at most proportional to the size of the event times
//! the number of nodes (times the depth), whatever the expression.
//!
//! Hazard: an expression that fails at run time (a missing attribute or field, a wrong type, a
//! division by zero, a result that is not a bool) is false for that event, never an error of the
//! evaluation: [`FilterCondition::eval`] says so with `Err`, and the engine counts it.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, OnceLock};

use cel::common::ast::{ComprehensionExpr, EntryExpr, Expr, LiteralValue, SourceInfo};
use cel::common::types::{
    CelBool, CelBytes, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelTimestamp, CelUInt,
};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::{Context, Env, IdedExpr, ParseErrors, Value};

use crate::event::{AttrValue, Data, Event};

/// At most this many bytes of condition text.
pub const MAX_CONDITION_BYTES: usize = 4096;
/// At most this many nodes in a condition, once its macros are expanded.
pub const MAX_CONDITION_NODES: usize = 512;
/// At most this many levels of nesting in a condition, once its macros are expanded.
pub const MAX_CONDITION_DEPTH: usize = 32;
/// The parser's own nesting limit (parentheses, lists, calls), before the tree is built.
const PARSER_DEPTH: u16 = 64;
/// The stack of the parser's thread: four times what the deepest text of
/// [`MAX_CONDITION_BYTES`] took in a debug build.
const PARSER_STACK: usize = 128 << 20;

/// The standard CEL environment: functions and macros. Built once; evaluations share it.
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

/// Why a condition does not compile. The message says where, as `line L, column C`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConditionError {
    #[error("must be at most {MAX_CONDITION_BYTES} bytes, got {0}")]
    TooLong(usize),
    #[error("must not be empty")]
    Empty,
    /// The parser's message, at the position it names.
    #[error("invalid expression at line {line}, column {column}: {message}")]
    Syntax { line: usize, column: usize, message: String },
    /// One of the limits of this module, at the node that breaks it.
    #[error("line {line}, column {column}: {message}")]
    Limit { line: usize, column: usize, message: String },
}

/// A compiled condition, ready to evaluate on any number of events; cheap to clone.
#[derive(Debug, Clone)]
pub struct FilterCondition {
    expr: Arc<IdedExpr>,
}

impl FilterCondition {
    /// Parses and checks a condition: its size, its syntax, and the limits of this module.
    pub fn compile(text: &str) -> Result<Self, ConditionError> {
        if text.len() > MAX_CONDITION_BYTES {
            return Err(ConditionError::TooLong(text.len()));
        }
        if text.trim().is_empty() {
            return Err(ConditionError::Empty);
        }
        // The parser recurses once per level of nesting, also where the tree it builds is flat
        // (chains of `+` or `.`), before any limit of ours applies: it runs on a thread of its
        // own with room for the deepest 4 KiB text, and returns only trees within the limits,
        // which evaluate (and drop) in little stack.
        std::thread::scope(|scope| {
            let parse = std::thread::Builder::new().name("condition-parser".into()).stack_size(PARSER_STACK);
            let parsed = parse.spawn_scoped(scope, || parse_and_check(text)).map_err(|e| ConditionError::Limit {
                line: 1,
                column: 1,
                message: format!("cannot start the parser: {e}"),
            })?;
            parsed.join().unwrap_or_else(|_| {
                Err(ConditionError::Limit { line: 1, column: 1, message: "the parser failed".into() })
            })
        })
        .map(|expr| Self { expr: Arc::new(expr) })
    }

    /// Evaluates the condition on an event. `Err` says why it failed at run time: the condition
    /// is then false for this event.
    pub fn eval(&self, bindings: &Bindings<'_>) -> Result<bool, String> {
        let mut ctx = Context::with_env(Arc::clone(&ENV));
        ctx.set_variable_resolver(bindings);
        match ctx.resolve(&self.expr) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!("evaluated to {}, not bool", other.type_of())),
            Err(e) => Err(e.to_string()),
        }
    }
}

fn parse_and_check(text: &str) -> Result<IdedExpr, ConditionError> {
    let parser = ENV.parser().max_recursion_depth(PARSER_DEPTH);
    let (expr, info) = parser.parse_with_source_info(text).map_err(syntax_error)?;
    check(&expr, &info)?;
    Ok(expr)
}

/// Returns the parser's first error, at the position it names.
fn syntax_error(errors: ParseErrors) -> ConditionError {
    let Some(first) = errors.errors.first() else {
        return ConditionError::Syntax { line: 1, column: 1, message: "does not parse".into() };
    };
    let (line, column) = (usize::try_from(first.pos.0).unwrap_or(1).max(1), usize::try_from(first.pos.1).unwrap_or(1));
    // The parser words its nesting limit as the debug form of an inner error.
    let message = if first.msg.contains("Recursion limit of") || first.msg == "UNKNOWN" {
        format!("nested too deeply: more than {PARSER_DEPTH} levels of parentheses, lists and calls")
    } else {
        first.msg.clone()
    };
    ConditionError::Syntax { line, column: column.max(1), message }
}

/// Where a node sits: at the top, in the list a macro iterates, or in a macro's body.
#[derive(Clone, Copy)]
enum Scope<'a> {
    Top,
    Range,
    Body(&'a ComprehensionExpr),
}

/// A node to check, with its depth and scope.
type Pending<'a> = (&'a IdedExpr, usize, Scope<'a>);

/// Checks the node count, the depth, the macro rules and the `matches` rule, without recursion
/// (the tree is as deep as the parser let it be).
fn check(root: &IdedExpr, info: &SourceInfo) -> Result<(), ConditionError> {
    let mut nodes = 0;
    let mut stack: Vec<Pending<'_>> = vec![(root, 1, Scope::Top)];
    while let Some((node, depth, scope)) = stack.pop() {
        nodes += 1;
        let broken = if nodes > MAX_CONDITION_NODES {
            Err(format!("too complex: more than {MAX_CONDITION_NODES} nodes"))
        } else if depth > MAX_CONDITION_DEPTH {
            Err(format!("nested too deeply: more than {MAX_CONDITION_DEPTH} levels"))
        } else {
            rule(node, scope)
        };
        if let Err(message) = broken {
            let (line, column) = position(info, node.id);
            return Err(ConditionError::Limit { line, column, message });
        }
        push_children(node, depth + 1, scope, &mut stack);
    }
    Ok(())
}

/// Checks the rules on one node: macros do not nest, a macro's body sees only the macro's
/// variables, the pattern of `matches` is a literal.
fn rule(node: &IdedExpr, scope: Scope<'_>) -> Result<(), String> {
    match (&node.expr, scope) {
        (Expr::Comprehension(_), Scope::Range | Scope::Body(_)) => {
            Err("a macro must not be nested in another macro".into())
        }
        (Expr::Ident(name), Scope::Body(c))
            if *name != c.iter_var && *name != c.accu_var && c.iter_var2.as_ref() != Some(name) =>
        {
            Err(format!("a macro's body sees only its own variables and literals, not {name:?}"))
        }
        (Expr::Call(call), _) if call.func_name == "matches" => {
            let pattern = if call.target.is_some() { call.args.first() } else { call.args.get(1) };
            match pattern.map(|p| &p.expr) {
                Some(Expr::Literal(LiteralValue::String(_))) => Ok(()),
                _ => Err("the pattern of matches() must be a string literal".into()),
            }
        }
        _ => Ok(()),
    }
}

fn push_children<'a>(node: &'a IdedExpr, depth: usize, scope: Scope<'a>, stack: &mut Vec<Pending<'a>>) {
    match &node.expr {
        Expr::Comprehension(c) => {
            stack.push((&c.iter_range, depth, Scope::Range));
            stack.push((&c.accu_init, depth, Scope::Range));
            for body in [&c.loop_cond, &c.loop_step, &c.result] {
                stack.push((body, depth, Scope::Body(c)));
            }
        }
        Expr::Call(call) => {
            stack.extend(call.target.iter().map(|t| (&**t, depth, scope)));
            stack.extend(call.args.iter().map(|a| (a, depth, scope)));
        }
        Expr::List(list) => stack.extend(list.elements.iter().map(|e| (e, depth, scope))),
        Expr::Map(map) => {
            for entry in &map.entries {
                if let EntryExpr::MapEntry(e) = &entry.expr {
                    stack.push((&e.key, depth, scope));
                    stack.push((&e.value, depth, scope));
                }
            }
        }
        Expr::Struct(s) => {
            for entry in &s.entries {
                if let EntryExpr::StructField(f) = &entry.expr {
                    stack.push((&f.value, depth, scope));
                }
            }
        }
        Expr::Select(select) => stack.push((&select.operand, depth, scope)),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}

/// Returns the (1-based) line and column of a node in the condition's text.
fn position(info: &SourceInfo, id: u64) -> (usize, usize) {
    let Some((start, _)) = info.offset_for(id) else { return (1, 1) };
    let before = &info.source.as_bytes()[..(start as usize).min(info.source.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let column = before.iter().rev().take_while(|b| **b != b'\n').count() + 1;
    (line, column)
}

/// What a condition sees of one event. Attributes are bound on lookup, without copies; `data`
/// is decoded once, on first use, and shared by every condition evaluated on the event.
///
/// | name | CEL type |
/// |---|---|
/// | `id`, `source`, `specversion`, `type`, `subject`, `datacontenttype`, `dataschema` | `string` |
/// | `time` | `google.protobuf.Timestamp` |
/// | an extension | by its type: `bool`, `int`, `string` (also URI and URI-reference), `bytes`, `google.protobuf.Timestamp` |
/// | `data` | decoded JSON (map, list, string, int, uint, double, bool, null) when the content type is JSON or absent and the data parses; otherwise `bytes`; `null` without data |
///
/// An attribute the event does not have is not bound: an expression that uses it fails (and is
/// false), which `has()` cannot test at the top level.
#[derive(Debug)]
pub struct Bindings<'e> {
    event: &'e Event,
    data: OnceLock<Box<dyn Val + 'e>>,
}

impl<'e> Bindings<'e> {
    pub fn new(event: &'e Event) -> Self {
        Self { event, data: OnceLock::new() }
    }
}

impl VariableResolver for Bindings<'_> {
    fn resolve<'b>(&'b self, name: &str) -> Option<CowVal<'b, 'b>> {
        let e = self.event;
        let string = |s: &'b str| CowVal::owned(CelString::from(s));
        match name {
            "id" => Some(string(&e.id)),
            "source" => Some(string(&e.source)),
            "specversion" => Some(string(&e.specversion)),
            "type" => Some(string(&e.event_type)),
            "subject" => e.subject.as_deref().map(string),
            "time" => e.time.map(|t| CowVal::owned(CelTimestamp::from(t.fixed_offset()))),
            "datacontenttype" => e.datacontenttype.as_deref().map(string),
            "dataschema" => e.dataschema.as_deref().map(string),
            "data" => Some(CowVal::Borrowed(self.data.get_or_init(|| data_value(e)).as_ref())),
            _ => e.extensions.get(name).map(|v| CowVal::Owned(attribute_value(v))),
        }
    }
}

fn attribute_value(value: &AttrValue) -> Box<dyn Val + '_> {
    match value {
        AttrValue::Boolean(b) => Box::new(CelBool::from(*b)),
        AttrValue::Integer(i) => Box::new(CelInt::from(i64::from(*i))),
        AttrValue::String(s) | AttrValue::Uri(s) | AttrValue::UriRef(s) => Box::new(CelString::from(s.as_str())),
        AttrValue::Bytes(b) => Box::new(CelBytes::from(b.as_slice())),
        AttrValue::Timestamp(t) => Box::new(CelTimestamp::from(t.fixed_offset())),
    }
}

/// Returns `data` as a condition sees it (see [`Bindings`]).
fn data_value(e: &Event) -> Box<dyn Val + '_> {
    let bytes = match &e.data {
        None => return Box::new(CelNull),
        Some(Data::Proto { value, .. }) => return Box::new(CelBytes::from(value.as_slice())),
        Some(Data::Binary(b)) => b.as_slice(),
        Some(Data::Text(t)) => t.as_bytes(),
    };
    let json = e.datacontenttype.as_deref().is_none_or(is_json);
    match json.then(|| serde_json::from_slice::<serde_json::Value>(bytes).ok()).flatten() {
        Some(v) => json_value(v),
        None => Box::new(CelBytes::from(bytes)),
    }
}

/// Returns whether a media type is JSON: `application/json`, `text/json` or `*/*+json`, any
/// parameters and case.
pub fn is_json(content_type: &str) -> bool {
    let media = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    media == "application/json" || media == "text/json" || media.ends_with("+json")
}

/// Converts decoded JSON: integers that fit `int` are `int`, larger ones `uint`, others `double`.
fn json_value(v: serde_json::Value) -> Box<dyn Val + 'static> {
    match v {
        serde_json::Value::Null => Box::new(CelNull),
        serde_json::Value::Bool(b) => Box::new(CelBool::from(b)),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Box::new(CelInt::from(i)),
            (None, Some(u)) => Box::new(CelUInt::from(u)),
            (None, None) => Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN))),
        },
        serde_json::Value::String(s) => Box::new(CelString::from(s)),
        serde_json::Value::Array(items) => {
            Box::new(CelList::from(items.into_iter().map(json_value).collect::<Vec<_>>()))
        }
        serde_json::Value::Object(fields) => {
            let map: HashMap<CelMapKey<'static>, Box<dyn Val>> =
                fields.into_iter().map(|(k, v)| (CelMapKey::from(k), json_value(v))).collect();
            Box::new(CelMap::from(map))
        }
    }
}

#[cfg(test)]
mod tests;
