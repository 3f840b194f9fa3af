//! End-to-end scenarios that need the machine to themselves, one at a time and in their own test
//! executable (cargo runs test executables one after another): `crash` holds its recording's loss to
//! a bound that a neighbour's load would stretch, and `hostile_rdp` measures this process's own
//! memory and CPU, which any other scenario in the process would add to.

mod crash;
mod hostile_rdp;

/// Held for the whole of every test here, so that they run one at a time whatever `--test-threads` says.
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
