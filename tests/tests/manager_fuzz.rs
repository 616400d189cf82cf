//! Generated vendor managers (issue 16): listings of generated steps (bad numbers, names,
//! interfaces), generated JSON answers, and every misbehaviour of a program (crashes, hangs,
//! children left running, floods, garbage, early and late exits), with a fixed seed and count.
//! For each: `get_clean_steps` still succeeds (one broken manager costs only its own steps),
//! running the manager's step ends in SUCCEEDED or FAILED with an error that names the manager,
//! the agent answers `GET /v1/status`, and no process of the manager is left.

use std::time::Duration;

use rivet_tests::vendor::{Managers, details, generated_managers};
use serde_json::json;

/// Generated managers per run; the figure goes in BENCHMARKS.md.
const COUNT: usize = 96;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_managers_cannot_hurt_the_agent() {
    let cases = generated_managers([16; 32], COUNT);
    let (mut succeeded, mut failed, mut passed_on) = (0, 0, 0);
    for (i, case) in cases.iter().enumerate() {
        let managers = Managers::new();
        managers.install("50-fuzz", &case.body());
        let agent = managers
            .start(|c| {
                c.manager_timeouts.query = Duration::from_secs(1);
                c.manager_timeouts.step = Duration::from_secs(1);
            })
            .await
            .expect("agent starts");
        let steps = agent.clean_steps().await;
        assert_eq!(steps["command_status"], "SUCCEEDED", "case {i} {case:?}: {steps}");
        let run = agent.run_clean_step("fuzz_step", json!({})).await;
        let text = details(&run);
        match run["command_status"].as_str() {
            Some("SUCCEEDED") => succeeded += 1,
            Some("FAILED") if run["command_error"]["type"] == "HardwareManagerMethodNotFound" => {
                // Not listed (well) by the manager: nobody has the step.
                assert!(
                    text.starts_with("Could not find method: fuzz_step"),
                    "case {i} {case:?}: {text}"
                );
                passed_on += 1;
            }
            Some("FAILED") => {
                assert!(text.contains("hardware manager fuzz"), "case {i} {case:?}: {text}");
                failed += 1;
            }
            _ => panic!("case {i} {case:?}: {run}"),
        }
        assert!(agent.status_answers().await, "case {i} {case:?}: GET /v1/status");
        assert_eq!(
            agent.survivors(),
            Vec::<String>::new(),
            "case {i} {case:?}: processes left"
        );
        agent.shutdown();
    }
    #[allow(clippy::print_stdout, reason = "the counts go in BENCHMARKS.md")]
    {
        println!(
            "manager fuzz: {COUNT} generated managers: {succeeded} steps succeeded, {failed} failed naming the manager, {passed_on} not offered"
        );
    }
}
