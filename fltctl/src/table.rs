//! The `list-*` tables of fltctl: column selection (`--fields`), the legend (header) row,
//! machine legends, and rendering through a port of Go's tabwriter ([`tabwrite`]).
//!
//! Everything here is pure: a command validates `--fields` with [`Columns::parse`] *before* it
//! calls the API (so a bad field fails without a request), prints [`Columns::warnings`] to stderr,
//! fetches its entities, and prints what [`list_unit_files`], [`list_units`] or
//! [`list_machines`] return to stdout.

mod tabwriter;

pub use tabwriter::tabwrite;

use flt_core::api::entities::{Machine, Unit, UnitState};
use flt_core::unit::Requirements;
use std::fmt;

/// How the rows are rendered: `--full` and `--no-legend`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStyle {
    /// Whole machine IDs and full hashes instead of `113f16a7...` and 7 hex digits.
    pub full: bool,
    /// No header row.
    pub no_legend: bool,
}

/// A bad `--fields` value (exit 1). `Display` is fleetctl's exact text.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FieldsError {
    /// `--fields ''`.
    Empty,
    /// A key that is not a field of this table.
    InvalidKey(String),
}

impl fmt::Display for FieldsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldsError::Empty => f.write_str("Must define output format"),
            FieldsError::InvalidKey(key) => {
                write!(
                    f,
                    "Invalid key in output format: {}",
                    flt_core::goquote::quote(key)
                )
            }
        }
    }
}

impl std::error::Error for FieldsError {}

/// The columns one `list-*` command offers.
pub trait Field: Copy + Sized + 'static {
    /// Every field with its `--fields` key.
    const ALL: &'static [(&'static str, Self)];
    /// The `--fields` default.
    const DEFAULT: &'static str;
    /// A stderr warning owed when the field is selected.
    fn warning(self) -> Option<&'static str> {
        None
    }
}

/// A validated `--fields` selection, in the order given (repeats allowed, as in fleetctl).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Columns<F> {
    keys: Vec<&'static str>,
    fields: Vec<F>,
}

impl<F: Field> Columns<F> {
    /// Parses a comma-separated `--fields` value. Keys are exact (case-sensitive).
    pub fn parse(spec: &str) -> Result<Columns<F>, FieldsError> {
        if spec.is_empty() {
            return Err(FieldsError::Empty);
        }
        let mut keys = Vec::new();
        let mut fields = Vec::new();
        for wanted in spec.split(',') {
            let Some(&(key, field)) = F::ALL.iter().find(|(key, _)| *key == wanted) else {
                return Err(FieldsError::InvalidKey(wanted.to_string()));
            };
            keys.push(key);
            fields.push(field);
        }
        Ok(Columns { keys, fields })
    }

    /// The default columns.
    pub fn default_columns() -> Columns<F> {
        // The defaults are keys of ALL; a mismatch is caught by the tests of each table.
        Columns::parse(F::DEFAULT).unwrap_or(Columns {
            keys: Vec::new(),
            fields: Vec::new(),
        })
    }

    /// Warnings to print to stderr before the table, one per selected deprecated field.
    pub fn warnings(&self) -> Vec<&'static str> {
        self.fields.iter().filter_map(|f| f.warning()).collect()
    }

    /// The legend row: the keys upper-cased.
    fn header(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.to_uppercase()).collect()
    }

    /// Renders rows: the legend (unless `no_legend`) then one line per row, tab-aligned.
    fn render<R>(
        &self,
        rows: impl IntoIterator<Item = R>,
        no_legend: bool,
        cell: impl Fn(F, &R) -> String,
    ) -> String {
        let mut text = String::new();
        if !no_legend {
            text.push_str(&self.header().join("\t"));
            text.push('\n');
        }
        for row in rows {
            let cells: Vec<String> = self.fields.iter().map(|&f| cell(f, &row)).collect();
            text.push_str(&cells.join("\t"));
            text.push('\n');
        }
        tabwrite(&text)
    }
}

/// `113f16a7...` (the first 8 characters and an ellipsis), or the whole ID with `--full`.
pub fn machine_id_legend(machine_id: &str, full: bool) -> String {
    if full {
        machine_id.to_string()
    } else {
        let short = machine_id
            .char_indices()
            .nth(8)
            .map_or(machine_id, |(end, _)| &machine_id[..end]);
        format!("{short}...")
    }
}

/// The ID legend plus `/<public IP>` when the machine is known and has one, e.g.
/// `113f16a7.../172.17.8.103`.
pub fn machine_full_legend(machine_id: &str, machines: &[Machine], full: bool) -> String {
    let legend = machine_id_legend(machine_id, full);
    match machines.iter().find(|m| m.id == machine_id) {
        Some(m) if !m.primary_ip.is_empty() => format!("{legend}/{}", m.primary_ip),
        _ => legend,
    }
}

/// Whether the unit is global (`[X-Fleet] Global=`, read as the scheduler reads it).
pub fn is_global(unit: &Unit) -> bool {
    Requirements::from_unit(&unit.unit_file(), &unit.name).global
}

/// The first `[Unit] Description=`, if any.
fn description(unit: &Unit) -> Option<&str> {
    unit.options
        .iter()
        .find(|o| o.section == "Unit" && o.name == "Description")
        .map(|o| o.value.as_str())
}

fn dash_if_empty(s: &str) -> String {
    if s.is_empty() {
        "-".to_string()
    } else {
        s.to_string()
    }
}

/// The columns of `list-unit-files`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitFileField {
    Unit,
    Hash,
    DesiredState,
    State,
    Target,
    /// The deprecated alias of `Target`.
    TargetMachine,
    Global,
    Description,
}

impl Field for UnitFileField {
    const ALL: &'static [(&'static str, UnitFileField)] = &[
        ("unit", UnitFileField::Unit),
        ("hash", UnitFileField::Hash),
        ("dstate", UnitFileField::DesiredState),
        ("state", UnitFileField::State),
        ("target", UnitFileField::Target),
        ("tmachine", UnitFileField::TargetMachine),
        ("global", UnitFileField::Global),
        ("desc", UnitFileField::Description),
    ];
    const DEFAULT: &'static str = "unit,hash,dstate,state,target";

    fn warning(self) -> Option<&'static str> {
        (self == UnitFileField::TargetMachine)
            .then_some(r#"WARNING: The "tmachine" field is deprecated. Use "target" instead"#)
    }
}

/// `list-unit-files`: every unit, sorted by name.
pub fn list_unit_files(
    units: &[Unit],
    machines: &[Machine],
    columns: &Columns<UnitFileField>,
    style: TableStyle,
) -> String {
    let mut sorted: Vec<&Unit> = units.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let rows = sorted.into_iter().map(|unit| (unit, is_global(unit)));
    columns.render(rows, style.no_legend, |field, &(unit, global)| {
        match field {
            UnitFileField::Unit => unit.name.clone(),
            UnitFileField::Hash => {
                let hash = unit.unit_file().hash();
                if style.full {
                    hash.to_hex()
                } else {
                    hash.short()
                }
            }
            UnitFileField::DesiredState => dash_if_empty(&unit.desired_state),
            // The list endpoint reports "inactive" for global units; it means nothing there.
            UnitFileField::State if global => "-".to_string(),
            UnitFileField::State => dash_if_empty(&unit.current_state),
            UnitFileField::Target | UnitFileField::TargetMachine => {
                if global {
                    "global".to_string()
                } else if unit.machine_id.is_empty() {
                    "-".to_string()
                } else {
                    machine_full_legend(&unit.machine_id, machines, style.full)
                }
            }
            UnitFileField::Global => global.to_string(),
            UnitFileField::Description => dash_if_empty(description(unit).unwrap_or("")),
        }
    })
}

/// The columns of `list-units`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitStateField {
    Unit,
    Machine,
    Load,
    Active,
    Sub,
    Hash,
}

impl Field for UnitStateField {
    const ALL: &'static [(&'static str, UnitStateField)] = &[
        ("unit", UnitStateField::Unit),
        ("machine", UnitStateField::Machine),
        ("load", UnitStateField::Load),
        ("active", UnitStateField::Active),
        ("sub", UnitStateField::Sub),
        ("hash", UnitStateField::Hash),
    ];
    const DEFAULT: &'static str = "unit,machine,active,sub";
}

/// `list-units`: every unit state (one per unit and machine), sorted by unit then machine ID.
/// systemd's states are shown as reported.
pub fn list_units(
    states: &[UnitState],
    machines: &[Machine],
    columns: &Columns<UnitStateField>,
    style: TableStyle,
) -> String {
    let mut sorted: Vec<&UnitState> = states.iter().collect();
    sorted.sort_by(|a, b| (&a.name, &a.machine_id).cmp(&(&b.name, &b.machine_id)));
    columns.render(sorted, style.no_legend, |field, state| match field {
        UnitStateField::Unit => state.name.clone(),
        UnitStateField::Machine if state.machine_id.is_empty() => "-".to_string(),
        UnitStateField::Machine => machine_full_legend(&state.machine_id, machines, style.full),
        UnitStateField::Load => state.systemd_load_state.clone(),
        UnitStateField::Active => state.systemd_active_state.clone(),
        UnitStateField::Sub => state.systemd_sub_state.clone(),
        UnitStateField::Hash if state.hash.is_empty() => "-".to_string(),
        UnitStateField::Hash if style.full => state.hash.clone(),
        UnitStateField::Hash => state.hash.chars().take(7).collect(),
    })
}

/// The columns of `list-machines`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MachineField {
    Machine,
    Ip,
    Metadata,
}

impl Field for MachineField {
    const ALL: &'static [(&'static str, MachineField)] = &[
        ("machine", MachineField::Machine),
        ("ip", MachineField::Ip),
        ("metadata", MachineField::Metadata),
    ];
    const DEFAULT: &'static str = "machine,ip,metadata";
}

/// `list-machines`: live machines sorted by ID; metadata as `k=v,k2=v2` sorted by key.
pub fn list_machines(
    machines: &[Machine],
    columns: &Columns<MachineField>,
    style: TableStyle,
) -> String {
    let mut sorted: Vec<&Machine> = machines.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    columns.render(sorted, style.no_legend, |field, machine| match field {
        MachineField::Machine => machine_id_legend(&machine.id, style.full),
        MachineField::Ip => dash_if_empty(&machine.primary_ip),
        MachineField::Metadata if machine.metadata.is_empty() => "-".to_string(),
        MachineField::Metadata => machine
            .metadata
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
    })
}

#[cfg(test)]
mod tests;
