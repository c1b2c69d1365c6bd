//! Creating units from local files ("lazy create"), shared by submit, load, start and restart.
//!
//! For each argument: the name is mangled (`foo` → `foo.service`); if the unit exists it is kept
//! (with a warning when the local file differs) unless `--replace` is given and the command may
//! replace a unit in its desired state; else its file is read from the argument's path, or, for
//! an instance, from its template in the registry or next to the argument. The unit is created
//! without a desired state, and fltctl waits for it to report `inactive`.

use crate::cli::Blocking;
use crate::context::Ctx;
use crate::log_at;
use flt_core::api::entities::{Unit, options_from_unit_file};
use flt_core::unit::{
    UnitFile, UnitNameInfo, mangle_name, unknown_requirements, validate_name, validate_options,
};
use std::path::Path;

/// The command creating units: it decides which desired states `--replace` may replace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Creator {
    Submit,
    Load,
    Start,
    /// restart never replaces.
    Restart,
}

impl Creator {
    fn replaceable(self) -> &'static [&'static str] {
        match self {
            Creator::Submit => &["inactive"],
            Creator::Load => &["inactive", "loaded"],
            Creator::Start => &["inactive", "loaded", "launched"],
            Creator::Restart => &[],
        }
    }
}

/// fleetctl's `maybeAppendDefaultUnitType`: `.service` when the argument has no extension.
pub fn with_default_suffix(arg: &str) -> String {
    let base = arg.rsplit('/').next().unwrap_or(arg);
    if base.contains('.') {
        arg.to_string()
    } else {
        format!("{arg}.service")
    }
}

/// Creates the units the arguments name and waits for them to be `inactive`. The error is the
/// text after `Error creating units: `.
pub fn lazy_create_units(
    ctx: &mut Ctx<'_>,
    args: &[String],
    creator: Creator,
    replace: bool,
    blocking: Blocking,
) -> Result<(), String> {
    let mut created = Vec::new();
    for arg in args {
        let arg = with_default_suffix(arg);
        let name = mangle_name(&arg);
        if !should_create(ctx, &arg, &name, creator, replace)? {
            continue;
        }
        let file = unit_file_for(ctx, &arg, &name, replace)?;
        create_unit(ctx, &name, &file)?;
        created.push(name);
    }
    let errors = super::wait::wait_all(ctx, &created, "inactive", blocking);
    for e in &errors {
        ctx.warn(format!("Error waiting on unit creation: {e}"));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err("One or more errors creating units".to_string())
    }
}

/// fleetctl's `checkUnitCreation`: whether to (re)create the unit.
fn should_create(
    ctx: &mut Ctx<'_>,
    arg: &str,
    name: &str,
    creator: Creator,
    replace: bool,
) -> Result<bool, String> {
    let existing = ctx
        .api
        .unit(name)
        .map_err(|e| format!("error retrieving Unit({name}) from Registry: {e}"))?;
    let Some(unit) = existing else {
        return Ok(true);
    };
    let replace = replace && creator != Creator::Restart;
    let different = local_unit_differs(ctx, arg, &unit, replace);
    if !replace {
        return Ok(false);
    }
    if !different? {
        ctx.say(format!(
            "Found same Unit({}) in Registry, nothing to do",
            unit.name
        ));
        return Ok(false);
    }
    if creator.replaceable().contains(&unit.desired_state.as_str()) {
        return Ok(true);
    }
    ctx.warn(format!(
        "Warning: can not replace Unit({}) in state '{}', use the appropriate command",
        unit.name, unit.desired_state
    ));
    Ok(false)
}

/// Whether the local file for `arg` (or, for an instance without one, the local template)
/// differs from `unit`. Without `replace` a difference is reported as a warning.
fn local_unit_differs(
    ctx: &mut Ctx<'_>,
    arg: &str,
    unit: &Unit,
    replace: bool,
) -> Result<bool, String> {
    let registry_hash = unit.unit_file().hash();
    match local_file_matches(arg, registry_hash) {
        Ok(same) => {
            if !same && !replace {
                ctx.warn(format!(
                    "WARNING: Unit {} in registry differs from local unit file {arg}. Add --replace to override.",
                    unit.name
                ));
            }
            Ok(!same)
        }
        Err(_) => {
            let base = arg.rsplit('/').next().unwrap_or(arg);
            let info = UnitNameInfo::parse(base)
                .ok_or(format!("error extracting information from unit name {arg}"))?;
            if !info.is_instance() {
                // Without --replace a missing local file is no error: the registry's unit is used.
                return Err(format!(
                    "error Unit {arg} does not seem to be a template unit"
                ));
            }
            let template = sibling(arg, &info.template_name());
            let same = local_file_matches(&template, registry_hash)?;
            if !same && !replace {
                ctx.warn(format!(
                    "WARNING: Unit {} in registry differs from local template unit file {arg}. Add --replace to override.",
                    unit.name
                ));
            }
            Ok(!same)
        }
    }
}

/// `file`'s hash equals `hash`; an error when the file is missing or unreadable. A file that
/// does not parse differs.
fn local_file_matches(file: &str, hash: flt_core::unit::UnitHash) -> Result<bool, String> {
    let text = read_file(file)?;
    Ok(UnitFile::parse(&text).is_ok_and(|local| local.hash() == hash))
}

fn read_file(file: &str) -> Result<String, String> {
    std::fs::read_to_string(file).map_err(|e| format!("open {file}: {}", io_text(&e)))
}

/// Go's wording of the common file errors.
fn io_text(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    }
}

/// `name` in the directory of `arg` (Go's `path.Join(path.Dir(arg), name)`).
fn sibling(arg: &str, name: &str) -> String {
    match arg.rfind('/') {
        Some(0) => format!("/{name}"),
        Some(i) => format!("{}/{name}", &arg[..i]),
        None => name.to_string(),
    }
}

/// fleetctl's `getUnitFile`: from the argument's path, else an instance's template.
fn unit_file_for(
    ctx: &mut Ctx<'_>,
    arg: &str,
    name: &str,
    replace: bool,
) -> Result<UnitFile, String> {
    if Path::new(arg).exists() {
        return parse_file(arg).map_err(|e| format!("failed getting Unit({arg}) from file: {e}"));
    }
    let info = UnitNameInfo::parse(name).ok_or(format!(
        "error extracting information from unit name {name}"
    ))?;
    if !info.is_instance() {
        return Err(format!(
            "unable to find Unit({name}) in Registry or on filesystem"
        ));
    }
    template_file(ctx, &info, arg, replace)
        .map_err(|e| format!("failed getting Unit({arg}) from template: {e}"))
}

fn parse_file(file: &str) -> Result<UnitFile, String> {
    let text = read_file(file)?;
    UnitFile::parse(&text).map_err(|e| e.to_string())
}

/// The template of an instance: from the registry (warning when a local template differs), else
/// from the argument's directory.
fn template_file(
    ctx: &mut Ctx<'_>,
    info: &UnitNameInfo,
    arg: &str,
    replace: bool,
) -> Result<UnitFile, String> {
    let template = info.template_name();
    let registered = ctx
        .api
        .unit(&template)
        .map_err(|e| format!("error retrieving template Unit({template}) from Registry: {e}"))?;
    if let Some(unit) = registered {
        // Only for the warning: a missing local template is fine here.
        let _ = local_unit_differs(ctx, arg, &unit, replace);
        log_at!(ctx, "DEBUG", "Template Unit({template}) found in registry");
        return Ok(unit.unit_file());
    }
    let path = sibling(arg, &template);
    if !Path::new(&path).exists() {
        return Err(format!(
            "unable to find template Unit({template}) in Registry or on filesystem"
        ));
    }
    parse_file(&path)
        .map_err(|e| format!("unable to load template Unit({template}) from file: {e}"))
}

/// Validates and creates the unit (no desired state: the server makes it `inactive`).
fn create_unit(ctx: &mut Ctx<'_>, name: &str, file: &UnitFile) -> Result<(), String> {
    validate_name(name).map_err(|e| e.to_string())?;
    validate_options(file).map_err(|e| e.to_string())?;
    for warning in unknown_requirements(file) {
        log_at!(ctx, "WARN", "Unit {name}: {warning}");
    }
    let unit = Unit {
        name: name.to_string(),
        options: options_from_unit_file(file),
        ..Unit::default()
    };
    ctx.api
        .create_unit(&unit)
        .map_err(|e| format!("failed creating unit {name}: {e}"))?;
    log_at!(ctx, "DEBUG", "Created Unit({name}) in Registry");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_suffix_only_without_extension() {
        assert_eq!(with_default_suffix("foo"), "foo.service");
        assert_eq!(with_default_suffix("foo.1"), "foo.1");
        assert_eq!(with_default_suffix("a.b/foo"), "a.b/foo.service");
        assert_eq!(with_default_suffix("dir/x.socket"), "dir/x.socket");
    }

    #[test]
    fn sibling_is_in_the_same_directory() {
        assert_eq!(sibling("foo@1.service", "foo@.service"), "foo@.service");
        assert_eq!(
            sibling("d/e/foo@1.service", "foo@.service"),
            "d/e/foo@.service"
        );
        assert_eq!(sibling("/foo@1.service", "foo@.service"), "/foo@.service");
    }
}
