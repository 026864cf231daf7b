//! Drill 8: two pgnode runs at once on one node: while the first holds the node's run lock, the
//! second is refused with exit 2 and a message naming the first; the first converges.

use std::time::Duration;

use crate::faults;
use crate::{ensure, fail, pending, wait_for, Ctx, Node, Result};

pub fn run(cx: &mut Ctx) -> Result<()> {
    faults::promise(
        cx,
        "a second pgnode run while one converges is refused with exit 2 and a clear message, touches nothing, and the first run converges",
    );
    let node = cx.cluster.primary().clone();
    let first_node = node.clone();
    let first =
        std::thread::spawn(move || first_node.pgnode(&["--role", first_node.role.as_str()]));
    let second = match refused_while_held(&node) {
        Ok(out) => out,
        Err(e) => {
            let _ = first.join();
            return Err(e);
        }
    };
    let first = match first.join() {
        Ok(r) => r?,
        Err(_) => return fail("the first run's thread panicked", ""),
    };
    let said = second.combined();
    ensure(
        second.code == Some(2),
        "the second run was not refused with exit 2",
        format!("exit {:?}\n{said}", second.code),
    )?;
    ensure(
        said.contains("another pgnode run")
            && said.contains("/run/pgnode.lock")
            && !said.contains("recap:"),
        "the refusal does not say clearly that another run holds the lock, or it ran steps",
        &said,
    )?;
    cx.note(format!("second run: exit 2: {}", said.trim()));
    ensure(
        first.success() && first.stdout.contains(" failed=0 "),
        "the first run did not converge",
        first.combined(),
    )?;
    cx.note("first run converged (failed=0)");
    faults::table_line(
        cx,
        "two pgnode runs at once on one node",
        "the second is refused at once (exit 2, names the first's PID), before checking anything",
        "exit 2 and the message while the first holds /run/pgnode.lock; the first converges",
        None,
    );
    Ok(())
}

/// Waits (bounded) until the first run holds the lock (seen in /proc/locks, which does not
/// touch it), then runs the second. The first run may finish before it is seen: then the
/// drill says so rather than passing.
fn refused_while_held(node: &Node) -> Result<crate::Output> {
    let probe = "i=$(stat -c %i /run/pgnode.lock 2>/dev/null) && grep -q \":$i \" /proc/locks";
    wait_for(
        "the first run to hold /run/pgnode.lock",
        Duration::from_secs(30),
        || {
            let held = node.run(&["sh", "-c", probe])?;
            if !held.success() {
                return pending("not held yet");
            }
            let out = node.pgnode(&["--role", node.role.as_str()])?;
            if out.code == Some(2)
                || out.code == Some(1) && out.combined().contains("another pgnode run")
            {
                return Ok(Some(out));
            }
            // The first run ended in between: this second run simply converged; try again.
            pending(format!("second run was not concurrent: {}", out.combined()))
        },
    )
}
