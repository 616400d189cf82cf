#!/bin/sh
# An executable hardware manager for rivet-agent, in plain POSIX sh.
# Install it as /etc/rivet/managers.d/acme-bios (mode 0755) in the ramdisk.
#
# Protocol (see docs/vendor-guide.md): one JSON request on stdin, JSON lines on stdout:
# any number of {"progress": "..."} lines, then one answer.
set -eu
request=$(cat)

# The agent gives the method, step and step type as variables too, so only step arguments need
# reading from the JSON. `field NAME` prints the string value of key NAME wherever it is in the
# request (key order does not matter; give arguments names no other key uses). No jq needed.
field() { printf '%s' "$request" | tr -d '\n' | sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p"; }

case "$RIVET_MANAGER_METHOD" in
  describe)
    echo '{"name": "acme_bios", "version": "1.3"}' ;;
  evaluate)
    # Only Acme machines: a real manager reads /sys/class/dmi/id/sys_vendor.
    # ACME_FORCE lets this example run anywhere.
    if [ "${ACME_FORCE:-1}" = 1 ] || grep -qi acme /sys/class/dmi/id/sys_vendor 2>/dev/null; then
      echo '{"support": 3}'
    else
      echo '{"support": 0}'
    fi ;;
  get_steps)
    case "$RIVET_MANAGER_STEP_TYPE" in
      clean|service)
        echo '{"steps": [{"step": "apply_bios_profile", "priority": 0, "interface": "bios",
          "reboot_requested": true, "abortable": false,
          "argsinfo": {"profile": {"description": "Name of the BIOS profile to apply", "required": true}}}]}' ;;
      *) echo '{"steps": []}' ;;
    esac ;;
  run_step)
    case "$RIVET_MANAGER_STEP" in
      apply_bios_profile)
        profile=$(field profile)
        if [ -z "$profile" ]; then echo '{"error": "argument profile is required"}'; exit 0; fi
        echo '{"progress": "applying BIOS profile '"$profile"'"}'
        # A real manager calls the vendor tool here.
        echo '{"progress": "BIOS profile '"$profile"' staged for the next boot"}'
        echo '{"result": {"profile": "'"$profile"'", "applied": true}}' ;;
      *) echo '{"incompatible": "acme_bios has no step '"$RIVET_MANAGER_STEP"'"}' ;;
    esac ;;
  *)
    echo "unknown method $RIVET_MANAGER_METHOD" >&2; exit 2 ;;
esac
