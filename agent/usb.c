/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The kernel's USB authorisation: authorized_default=0 on every controller, per-device
 * "authorized" written through a descriptor opened on the device's own sysfs directory,
 * and the interface classes read from the raw descriptors (present before authorisation).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "cleanup.h"
#include "grant.h"
#include "log.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(struct udev_enumerate *, udev_enumerate_unref)

/* Writes value into attr of the sysfs directory syspath, never following links. */
static int sysfs_write(const char *syspath, const char *attr, const char *value)
{
        if (strncmp(syspath, "/sys/", 5) != 0)
                return -EINVAL;
        _cleanup_close_ int dfd = open(syspath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return -errno;
        _cleanup_close_ int fd = openat(dfd, attr, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        size_t n = strlen(value);
        return write(fd, value, n) == (ssize_t)n ? 0 : -errno;
}

int usb_set_authorized(const char *syspath, bool on)
{
        return sysfs_write(syspath, "authorized", on ? "1" : "0");
}

int usb_default_deny(agent *a)
{
        /* Controllers that register later (their driver loads after the agent, as xhci
         * often does at boot) take usbcore's authorized_default when they register: set
         * it to 0 first, so a stick present at boot on such a controller is never let in
         * before the agent decides it. The unit loads usbcore before the agent starts. */
        int r = sysfs_write("/sys/module/usbcore", "parameters/authorized_default", "0");
        if (r == -ENOENT) /* no usbcore (yet): no controller can exist; later ones are closed on their uevent */
                log_warning("usbcore is not loaded: controllers registering later are closed on their uevent.");
        else if (r < 0) /* a controller that registers later is closed on its uevent, with a short window */
                log_error_errno(r, "Cannot set usbcore's authorized_default=0: %m");
        _cleanup_(udev_enumerate_unrefp) struct udev_enumerate *e = udev_enumerate_new(a->udev);
        if (!e)
                return -ENOMEM;
        udev_enumerate_add_match_subsystem(e, "usb");
        udev_enumerate_add_match_sysattr(e, "authorized_default", NULL);
        r = udev_enumerate_scan_devices(e);
        if (r < 0)
                return r;
        int n = 0;
        struct udev_list_entry *l;
        udev_list_entry_foreach(l, udev_enumerate_get_list_entry(e)) {
                r = sysfs_write(udev_list_entry_get_name(l), "authorized_default", "0");
                if (r < 0) /* a controller we cannot close would let devices in: fatal at start */
                        return log_error_errno(r, "Cannot set authorized_default=0 on %s: %m",
                                               udev_list_entry_get_name(l));
                n++;
        }
        return n;
}

int usb_read_ifaces(const char *syspath, agent_iface *ret, size_t max)
{
        _cleanup_close_ int dfd = open(syspath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return -errno;
        _cleanup_close_ int fd = openat(dfd, "descriptors", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        uint8_t buf[16384];
        size_t len = 0;
        for (;;) {
                ssize_t n = read(fd, buf + len, sizeof buf - len);
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                len += n;
                if (len == sizeof buf)
                        return -E2BIG; /* more descriptors than any real device: refused */
        }
        return agent_descriptors_parse(buf, len, ret, max);
}

agent_dev *agent_dev_find(agent *a, const char *syspath)
{
        for (size_t i = 0; i < AGENT_DEVICES_MAX; i++)
                if (a->devs[i].used && streq(a->devs[i].syspath, syspath))
                        return &a->devs[i];
        return NULL;
}

static agent_dev *dev_new(agent *a, const char *syspath)
{
        agent_dev *d = agent_dev_find(a, syspath);
        if (d)
                return d;
        for (size_t i = 0; i < AGENT_DEVICES_MAX; i++)
                if (!a->devs[i].used) {
                        d = &a->devs[i];
                        *d = (agent_dev){.used = true, .verdict = -1, .next_change = INT64_MAX, .agent = a};
                        snprintf(d->syspath, sizeof d->syspath, "%s", syspath);
                        return d;
                }
        return NULL;
}

static bool port_allowed(agent *a, const char *port)
{
        char **l = a->cfg->media.allowed_ports;
        if (!l || !l[0])
                return true;
        for (; *l; l++)
                if (streq(*l, port))
                        return true;
        return false;
}

/* Fills the identity from kernel sysfs attributes; device strings are only escaped. */
static void dev_identity(agent_dev *d, struct udev_device *u)
{
        const char *v = udev_device_get_sysattr_value(u, "idVendor");
        const char *p = udev_device_get_sysattr_value(u, "idProduct");
        const char *s = udev_device_get_sysattr_value(u, "serial");
        if (agent_usb_id_normalize(v, d->vendor) < 0)
                snprintf(d->vendor, sizeof d->vendor, "????");
        if (agent_usb_id_normalize(p, d->product) < 0)
                snprintf(d->product, sizeof d->product, "????");
        if (agent_escape(s ? s : "", d->serial, sizeof d->serial) < 0)
                snprintf(d->serial, sizeof d->serial, "(too long)");
        char tmp[AGENT_SERIAL_MAX + 1];
        d->serial_ok = agent_serial_for_decide(s, tmp) >= 0 && !strchr(d->vendor, '?') &&
                       !strchr(d->product, '?');
        const char *port = udev_device_get_sysname(u);
        snprintf(d->port, sizeof d->port, "%s", agent_port_valid(port) ? port : "invalid");
}

static void set_auth(agent *a, agent_dev *d, bool on)
{
        int r = usb_set_authorized(d->syspath, on);
        if (r < 0)
                log_error_errno(r, "Cannot write authorized=%d for port %s: %m", on, d->port);
        d->authorized = on && r >= 0;
}

/* Storage: policyd decides; anything but an answer keeps it blocked (fail closed). */
static void storage_decide(agent *a, agent_dev *d)
{
        int r = d->serial_ok ? decide_device(a, d) : -E2BIG;
        if (r == -E2BIG) {
                d->verdict = MAMORI_VERDICT_BLOCKED; /* cannot be named to policyd: blocked */
                snprintf(d->reason, sizeof d->reason, "identity-unusable");
        } else if (r < 0) {
                d->verdict = -1;
                snprintf(d->reason, sizeof d->reason, "policyd-unreachable");
        }
        bool allow = agent_verdict_authorises(d->verdict); /* identify: let in to read its mark only */
        /* Act first: policyd recorded its decision durably before answering (R-EV-9);
         * the agent's own records follow without holding the device up. */
        set_auth(a, d, allow);
        (void)evidence_device(a, "connect", d, "class", agent_class_verdict_to_string(d->cls), NULL);
        (void)evidence_device(a, "verdict", d, "verdict", agent_verdict_recorded(d->verdict), "reason", d->reason,
                              "media", d->no, NULL);
        if (!allow)
                notify_refused(a, d);
        decide_arm_timer(a, d);
}

void usb_device_added(agent *a, struct udev_device *u)
{
        const char *syspath = udev_device_get_syspath(u);
        const char *devtype = udev_device_get_devtype(u);
        if (!syspath || !devtype || !streq(devtype, "usb_device"))
                return;
        if (udev_device_get_sysattr_value(u, "authorized_default")) {
                /* A controller that came after the agent (its driver loaded later): close it
                 * now. Devices the kernel enumerated on it meanwhile come as their own
                 * events and are decided (refused ones deauthorised) like any other. */
                int r = sysfs_write(syspath, "authorized_default", "0");
                if (r < 0)
                        log_error_errno(r, "Cannot set authorized_default=0 on %s: %m", syspath);
                else
                        log_info("authorized_default=0 on the new controller %s.", udev_device_get_sysname(u));
                return;
        }
        agent_dev *d = dev_new(a, syspath);
        if (!d) { /* no room to track it: it stays unauthorised (fail closed) */
                (void)usb_set_authorized(syspath, false);
                log_error("Too many USB devices tracked; refusing %s.", udev_device_get_sysname(u));
                return;
        }
        dev_identity(d, u);
        watch_presence(a, d, true); /* any device may be someone's authentication token */
        agent_iface ifs[AGENT_IFACES_MAX];
        int n = usb_read_ifaces(syspath, ifs, ELEMENTSOF(ifs));
        d->cls = n < 0 ? AGENT_REFUSE : agent_classify(ifs, n, a->classes, a->n_classes);
        if (!port_allowed(a, d->port)) { /* R-REG-8: whatever it is */
                d->verdict = MAMORI_VERDICT_BLOCKED;
                snprintf(d->reason, sizeof d->reason, "port-disabled");
        } else if (d->cls == AGENT_STORAGE) {
                storage_decide(a, d);
                return;
        } else {
                d->verdict = d->cls == AGENT_LOCAL_ALLOW ? MAMORI_VERDICT_ALLOWED : MAMORI_VERDICT_BLOCKED;
                snprintf(d->reason, sizeof d->reason, "%s",
                         d->cls == AGENT_LOCAL_ALLOW ? "local-class" : d->cls == AGENT_BADUSB ? "badusb" : "class-refused");
        }
        bool allow = d->verdict == MAMORI_VERDICT_ALLOWED;
        set_auth(a, d, allow); /* a local rule: nothing to wait for */
        (void)evidence_device(a, "connect", d, "class", agent_class_verdict_to_string(d->cls), NULL);
        (void)evidence_device(a, "verdict", d, "verdict", allow ? "allowed" : "blocked", "reason", d->reason, NULL);
        if (!allow)
                notify_refused(a, d);
}

void usb_device_removed(agent *a, struct udev_device *u)
{
        agent_dev *d = agent_dev_find(a, udev_device_get_syspath(u) ?: "");
        if (!d)
                return;
        if (d->mounted)
                (void)mount_release(a, d);
        (void)evidence_device(a, "removal", d, NULL);
        watch_presence(a, d, false); /* a token pulled out: policyd says whose, the agent locks */
        d->timer = sd_event_source_disable_unref(d->timer);
        d->used = false;
}
