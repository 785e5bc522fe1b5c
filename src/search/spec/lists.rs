//! The search file's `genes:` and `objectives:` lists.
use serde_yaml_ng::Value;

use super::{get, Ctx, GeneSpec, Objective, GENE_KEYS, OBJECTIVE_KEYS};
use crate::search::Result;

pub(super) fn genes(ctx: &Ctx, v: Option<&Value>) -> Result<Vec<GeneSpec>> {
    let list = v
        .and_then(Value::as_sequence)
        .filter(|l| !l.is_empty())
        .ok_or_else(|| ctx.err("genes", "expected a non-empty list of genes"))?;
    let mut out: Vec<GeneSpec> = Vec::new();
    for (i, g) in list.iter().enumerate() {
        let p = format!("genes[{i}]");
        let e = ctx.keys(&p, g, GENE_KEYS)?;
        let req = |k: &str| get(&e, k).ok_or_else(|| ctx.err(&p, format!("missing `{k}:`")));
        let name = ctx.string(&format!("{p}.name"), req("name")?)?;
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            return Err(ctx.err(
                &format!("{p}.name"),
                format!("`{name}`: use letters, digits, `_`, `-` or `.` (it is a CSV column)"),
            ));
        }
        if out.iter().any(|o| o.name == name) {
            return Err(ctx.err(
                &format!("{p}.name"),
                format!("two genes are named `{name}`"),
            ));
        }
        let stage = ctx.string(&format!("{p}.stage"), req("stage")?)?;
        let at = match req("at")? {
            Value::Sequence(items) if !items.is_empty() => items
                .iter()
                .enumerate()
                .map(|(j, s)| ctx.string(&format!("{p}.at[{j}]"), s))
                .collect::<Result<Vec<_>>>()?,
            v => vec![ctx.string(&format!("{p}.at"), v)?],
        };
        let range = match req("range")?.as_sequence().map(|s| s.as_slice()) {
            Some([a, b]) => (
                ctx.number(&format!("{p}.range"), a)?,
                ctx.number(&format!("{p}.range"), b)?,
            ),
            _ => return Err(ctx.err(&format!("{p}.range"), "expected `[min, max]`")),
        };
        if range.0 >= range.1 {
            return Err(ctx.err(
                &format!("{p}.range"),
                format!("min {} must be below max {}", range.0, range.1),
            ));
        }
        let start = get(&e, "start")
            .map(|v| ctx.number(&format!("{p}.start"), v))
            .transpose()?;
        if let Some(s) = start {
            if s < range.0 || s > range.1 {
                return Err(ctx.err(
                    &format!("{p}.start"),
                    format!("{s} is outside the range [{}, {}]", range.0, range.1),
                ));
            }
        }
        out.push(GeneSpec {
            name,
            stage,
            at,
            range,
            start,
        });
    }
    Ok(out)
}

pub(super) fn objectives(ctx: &Ctx, v: Option<&Value>) -> Result<Vec<Objective>> {
    let list = v
        .and_then(Value::as_sequence)
        .filter(|l| !l.is_empty())
        .ok_or_else(|| {
            ctx.err(
                "objectives",
                "expected a non-empty list of `{task, split, metric, weight}`",
            )
        })?;
    let mut out: Vec<Objective> = Vec::new();
    for (i, o) in list.iter().enumerate() {
        let p = format!("objectives[{i}]");
        let e = ctx.keys(&p, o, OBJECTIVE_KEYS)?;
        let task = get(&e, "task").ok_or_else(|| ctx.err(&p, "missing `task:` (a task file)"))?;
        let task = ctx.relative(&ctx.string(&format!("{p}.task"), task)?);
        let name = match get(&e, "name") {
            Some(v) => ctx.string(&format!("{p}.name"), v)?,
            None => task
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| format!("objective{i}")),
        };
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            return Err(ctx.err(
                &format!("{p}.name"),
                format!("`{name}`: use letters, digits, `_`, `-` or `.` (it is a CSV column)"),
            ));
        }
        if out.iter().any(|o| o.name == name) {
            return Err(ctx.err(
                &format!("{p}.name"),
                format!("two objectives are named `{name}`; give each a distinct `name:`"),
            ));
        }
        let s = |k: &str| {
            get(&e, k)
                .map(|v| ctx.string(&format!("{p}.{k}"), v))
                .transpose()
        };
        let weight = get(&e, "weight")
            .map(|v| ctx.number(&format!("{p}.weight"), v))
            .transpose()?
            .unwrap_or(1.0);
        let limit = get(&e, "limit")
            .map(|v| ctx.uint(&format!("{p}.limit"), v).map(|n| n as usize))
            .transpose()?;
        out.push(Objective {
            name,
            task,
            split: s("split")?,
            metric: s("metric")?,
            weight,
            limit,
        });
    }
    Ok(out)
}
