//! The `batch_job` example, built as a binary so that the integration tests can run it as a
//! child process (`CARGO_BIN_EXE_*` exists only for binaries). See `examples/batch_job.rs`.

#[path = "../../examples/batch_job.rs"]
mod example;

fn main() {
    example::main();
}
