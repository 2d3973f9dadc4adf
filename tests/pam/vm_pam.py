#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""pam_mamori in a real system (R-AUTH-1, R-AUTH-2): the shipped pam-auth-update
profiles applied to the guest's /etc/pam.d, the real pam_unix with a real
/etc/shadow, policyd on its default socket, and pamtester (a program we do not
build, so the module must load without sanitizers) logging in and locking out."""
import os
import sys

SOURCE = os.environ.get("MAMORI_SOURCE_ROOT") or os.path.join(os.path.dirname(__file__), "..", "..")
BUILD = os.environ.get("MAMORI_BUILD_ROOT") or os.path.join(SOURCE, "build")
sys.path.insert(0, os.path.join(SOURCE, "tests", "vm"))
from mamori_vm import check, run_scenarios  # noqa: E402

POLICYD = os.path.join(BUILD, "policyd", "mamori-policyd")
MEDIACTL = os.path.join(BUILD, "mediactl", "mediactl")
MODULE = os.path.join(BUILD, "pam_module", "pam_mamori.so")
USER, PASSWORD = "pamuser", "Good#Pass9"
CONFIG = "auth: { deny = 3; unlock_time = 900; };\n"


def setup(vm):
    """Installs the module and profiles, starts policyd, makes a user with a password."""
    vm.run(["mkdir", "-p", "/run/mamori", "/var/lib/mamori-test", "/etc/mamori"], check=True)
    vm.copy_in(MODULE, "/lib/x86_64-linux-gnu/security/pam_mamori.so", mode=0o644)
    prof = os.path.join(SOURCE, "rules", "pam-configs")
    for p in os.listdir(prof):
        vm.copy_in(os.path.join(prof, p), "/usr/share/pam-configs/" + p)
    vm.copy_in(CONFIG.encode(), "/etc/mamori/mamori.conf")
    vm.run(["pam-auth-update", "--package", "--force"], check=True)
    vm.sh("setsid %s --state-dir /var/lib/mamori-test --socket /run/mamori/policyd.sock "
          "--config /etc/mamori/mamori.conf >/tmp/policyd.log 2>&1 < /dev/null & echo $! > /tmp/policyd.pid" % POLICYD)
    vm.wait_for(lambda: vm.exists("/run/mamori/policyd.sock"), timeout=60, what="policyd's socket")
    vm.run(["useradd", "-m", USER], check=True)
    vm.run(["chpasswd"], input="%s:%s\n" % (USER, PASSWORD), check=True)


def passwd_records(vm):
    r = vm.run(["sqlite3", "/var/lib/mamori-test/evidence.db",
                "SELECT count(*) FROM records WHERE type = 'auth.passwd'"], check=True)
    return int(r.stdout.strip())


def pamtester(vm, op, password):
    return vm.run(["pamtester", "login", USER, op], input=password + "\n")


def pamtester_logs_in_and_locks_out(vm):
    setup(vm)
    auth = vm.read("/etc/pam.d/common-auth").decode()
    check("pam_mamori.so preauth" in auth and "pam_mamori.so authsucc" in auth,
          "pam-auth-update did not put pam_mamori in common-auth:\n%s", auth)
    r = pamtester(vm, "authenticate", PASSWORD)
    check(r.rc == 0, "right password refused: %s %s", r.stdout, r.stderr)
    r = pamtester(vm, "acct_mgmt", "")
    check(r.rc == 0, "account refused: %s %s", r.stdout, r.stderr)
    for _ in range(3):
        r = pamtester(vm, "authenticate", "wrong")
        check(r.rc != 0, "a wrong password was accepted")
    r = pamtester(vm, "authenticate", PASSWORD)
    check(r.rc != 0 and "locked" in r.stdout + r.stderr,
          "right password not refused as locked after 3 failures: %s %s", r.stdout, r.stderr)
    r = pamtester(vm, "acct_mgmt", "")
    check(r.rc != 0, "account face let a locked user in")
    r = vm.run([MEDIACTL, "user", "unlock", USER], env={"MAMORI_SOCKET": "/run/mamori/policyd.sock"})
    check(r.rc == 0, "unlock failed: %s", r.stderr)
    r = pamtester(vm, "authenticate", PASSWORD)
    check(r.rc == 0, "right password refused after unlock: %s %s", r.stdout, r.stderr)


def password_rules_and_history(vm):
    """R-AUTH-5 through the real password stack: pam_pwquality with the shipped
    settings, pam_pwhistory refusing reuse, pam_unix changing /etc/shadow."""
    vm.run(["mkdir", "-p", "/etc/security/pwquality.conf.d"], check=True)
    vm.copy_in(os.path.join(SOURCE, "rules", "pwquality-mamori.conf"),
               "/etc/security/pwquality.conf.d/mamori.conf")
    n0 = passwd_records(vm)
    r = vm.run(["pamtester", "login", USER, "chauthtok"], input="abcdefg1\nshort!1\nabcdefgh!\n")
    check(r.rc != 0, "a password without symbols/digits/length was accepted: %s %s", r.stdout, r.stderr)
    n1 = passwd_records(vm)
    r = vm.run(["pamtester", "login", USER, "chauthtok"], input="Other#Pass7\nOther#Pass7\n")
    check(r.rc == 0, "a good new password was refused: %s %s", r.stdout, r.stderr)
    n2 = passwd_records(vm)
    r = pamtester(vm, "authenticate", "Other#Pass7")
    check(r.rc == 0, "the new password does not log in: %s %s", r.stdout, r.stderr)
    r = vm.run(["pamtester", "login", USER, "chauthtok"], input=("%s\n" % PASSWORD) * 6)
    check(r.rc != 0 and "already" in r.stdout + r.stderr,
          "the previous password was not refused by the history: %s %s", r.stdout, r.stderr)
    n3 = passwd_records(vm)
    print("# auth.passwd records: start %d, after refused %d, after change %d, after reuse %d"
          % (n0, n1, n2, n3), flush=True)
    check((n1 - n0, n2 - n1, n3 - n2) == (0, 1, 0),
          "auth.passwd evidence only for the change that happened: %d %d %d %d", n0, n1, n2, n3)
    vm.sh('kill "$(cat /tmp/policyd.pid)"')


if __name__ == "__main__":
    sys.exit(run_scenarios([pamtester_logs_in_and_locks_out, password_rules_and_history], name="vm-pam"))
