fn main() -> std::process::ExitCode {
    homeward::cli::main()
}
