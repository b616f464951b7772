// glibc malloc was a tenth of the machine's time under load (its fastbin
// consolidation on every large request buffer); mimalloc keeps per-thread
// free lists. Without transparent huge pages (`no_thp`): with them, idle
// RSS grew from 22 to 36 MB.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    homeward::cli::main()
}
