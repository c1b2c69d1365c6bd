//! One module per subcommand; each has its clap `Args` and a `run` returning the exit code.

pub mod cat;
pub mod completions;
pub(crate) mod create;
pub mod destroy;
pub mod fd_forward;
pub(crate) mod find;
pub mod journal;
pub mod list_machines;
pub mod list_unit_files;
pub mod list_units;
pub mod load;
pub mod man;
pub mod restart;
pub mod ssh;
pub mod start;
pub mod status;
pub mod stop;
pub mod submit;
pub(crate) mod target_state;
pub mod unload;
pub mod verify;
pub mod version;
pub mod wait;

use crate::cli::Command;
use crate::context::Ctx;

/// Runs a command that needs the API.
pub fn dispatch(ctx: &mut Ctx<'_>, command: &Command) -> u8 {
    match command {
        Command::Submit(a) => submit::run(ctx, a),
        Command::Load(a) => load::run(ctx, a),
        Command::Start(a) => start::run(ctx, a),
        Command::Stop(a) => stop::run(ctx, a),
        Command::Unload(a) => unload::run(ctx, a),
        Command::Destroy(a) => destroy::run(ctx, a),
        Command::Restart(a) => restart::run(ctx, a),
        Command::ListUnits(a) => list_units::run(ctx, a),
        Command::ListUnitFiles(a) => list_unit_files::run(ctx, a),
        Command::ListMachines(a) => list_machines::run(ctx, a),
        Command::Cat(a) => cat::run(ctx, a),
        Command::Status(a) => status::run(ctx, a),
        Command::Journal(a) => journal::run(ctx, a),
        Command::Ssh(a) => ssh::run(ctx, a),
        Command::FdForward(a) => fd_forward::run(ctx, a),
        Command::Verify(a) => verify::run(ctx, a),
        Command::Version(a) => version::run(ctx, a),
        Command::Completions(a) => completions::run(ctx.out, a),
        Command::Man(a) => man::run(ctx.out, ctx.err, a),
    }
}
