//! `osproxy-directives`: the operator binary. Everything lives in the library
//! so tests can reach the admin router and the parsers; see [`osproxy_directives::main`].

fn main() -> std::process::ExitCode {
    osproxy_directives::main()
}
