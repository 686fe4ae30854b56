//! etcd's auth through etcdctl (users, roles, prefix permissions, `auth enable/disable`,
//! refusals). Each scenario starts on fresh servers, so enabling auth touches no other
//! scenario. The full etcdctl output is in the observation and diffed in `both` mode.

use crate::scenario::{Area, Ctx, Res, Scenario, Topology, sc};

macro_rules! entries {
    ($($name:literal, $f:ident, $fast:expr, $about:literal;)*) => {
        vec![$(sc($name, Area::Etcdctl, Topology::Single, $about, $fast, |c| Box::pin($f(c)))),*]
    };
}

pub fn scenarios() -> Vec<Scenario> {
    entries![
        "etcdctl/auth-enable-needs-root", enable_needs_root, true,
            "auth enable: refused without root, then every request needs a credential";
        "etcdctl/auth-prefix-role", prefix_role, false,
            "a role with readwrite on a prefix: allowed inside, permission denied outside";
        "etcdctl/auth-user-role-admin", user_role_admin, false,
            "user/role listing and root protection need the root role while auth is on";
        "etcdctl/auth-watch-refused", watch_refused, false,
            "a watch outside the user's permissions is cancelled by the server";
    ]
}

const ROOT: &str = "--user root:rootpw";
const ALICE: &str = "--user alice:alicepw";

/// root, and alice with role `app` (readwrite on `app/*`); auth on.
async fn setup(c: &mut Ctx) -> Res {
    c.ctl_ok(
        "user add root --new-user-password=rootpw",
        "User root created",
    )
    .await?;
    c.ctl_ok("role add app", "Role app created").await?;
    c.ctl_ok(
        "role grant-permission app readwrite app/ --prefix",
        "Role app updated",
    )
    .await?;
    c.ctl_ok(
        "user add alice --new-user-password=alicepw",
        "User alice created",
    )
    .await?;
    c.ctl_ok(
        "user grant-role alice app",
        "Role app is granted to user alice",
    )
    .await?;
    c.ctl_ok("auth enable", "Authentication Enabled").await?;
    Ok(())
}

async fn enable_needs_root(c: &mut Ctx) -> Res {
    c.ctl_err("auth enable", "etcdserver: root user does not exist")
        .await?;
    setup(c).await?;
    c.ctl_err("put k v", "etcdserver: user name is empty")
        .await?;
    c.ctl_err("--user root:wrong get k", "invalid user ID or password")
        .await?;
    c.ctl_ok(&format!("{ROOT} put k v"), "OK").await?;
    c.ctl_ok(&format!("{ROOT} get k"), "k\nv").await?;
    c.ctl_ok(&format!("{ROOT} auth disable"), "Authentication Disabled")
        .await?;
    c.ctl_ok("get k", "k\nv").await?;
    Ok(())
}

async fn prefix_role(c: &mut Ctx) -> Res {
    setup(c).await?;
    c.ctl_ok(&format!("{ALICE} put app/a 1"), "OK").await?;
    c.ctl_ok(&format!("{ALICE} get app/ --prefix"), "app/a\n1")
        .await?;
    c.ctl_err(
        &format!("{ALICE} put other 1"),
        "etcdserver: permission denied",
    )
    .await?;
    c.ctl_err(
        &format!("{ALICE} get a --prefix"),
        "etcdserver: permission denied",
    )
    .await?;
    c.ctl_ok(&format!("{ALICE} del app/ --prefix"), "1").await?;
    Ok(())
}

async fn user_role_admin(c: &mut Ctx) -> Res {
    setup(c).await?;
    c.ctl_ok(&format!("{ROOT} user list"), "alice\nroot")
        .await?;
    c.ctl_err(
        &format!("{ALICE} user list"),
        "etcdserver: permission denied",
    )
    .await?;
    c.ctl_ok(
        &format!("{ALICE} user get alice"),
        "User: alice\nRoles: app",
    )
    .await?;
    c.ctl_ok(
        &format!("{ALICE} role get app"),
        "Role app\nKV Read:\n\t[app/, app0) (prefix app/)\nKV Write:\n\t[app/, app0) (prefix app/)",
    )
    .await?;
    c.ctl_err(
        &format!("{ROOT} user delete root"),
        "etcdserver: invalid auth management",
    )
    .await?;
    Ok(())
}

async fn watch_refused(c: &mut Ctx) -> Res {
    setup(c).await?;
    c.ctl_err(
        &format!("{ALICE} watch secret"),
        "watch is canceled by the server",
    )
    .await?;
    Ok(())
}
