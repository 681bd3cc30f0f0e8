"""An HL7 sender nobody here wrote: builds ORU^R01 messages with hl7apy's message API, sends them over
MLLP with python-hl7's MLLPClient, and checks the hub's acknowledgments with both libraries.

Usage: hl7_mllp_send.py HOST PORT. Exit 0 when every check holds, 1 on a failed check, 3 when a
package is missing (tests/python/requirements.txt not installed).
"""

import json
import sys

try:
    import hl7
    from hl7.client import MLLPClient
    from hl7apy.core import Message
    from hl7apy.parser import parse_message
except ImportError as e:  # an older .venv
    print(f"python package missing: {e}", file=sys.stderr)
    sys.exit(3)


def oru(control_id, patient_id, value):
    """A v2.5.1 ORU^R01 with one glucose result, local code only (the hub maps it to LOINC)."""
    m = Message("ORU_R01", version="2.5.1")
    m.msh.msh_3 = "EXTLIS"
    m.msh.msh_4 = "HX_LIS"
    m.msh.msh_5 = "YILIAN"
    m.msh.msh_6 = "HUB"
    m.msh.msh_7 = "20261124083000+0800"
    m.msh.msh_9 = "ORU^R01^ORU_R01"
    m.msh.msh_10 = control_id
    m.msh.msh_11 = "P"
    m.msh.msh_12 = "2.5.1"
    m.msh.msh_18 = "UNICODE UTF-8"
    result = m.add_group("ORU_R01_PATIENT_RESULT")
    patient = result.add_group("ORU_R01_PATIENT")
    patient.pid.pid_3 = f"{patient_id}^^^HX^MR"
    patient.pid.pid_5 = "外部^测试"
    patient.pid.pid_7 = "19700101"
    patient.pid.pid_8 = "F"
    order = result.add_group("ORU_R01_ORDER_OBSERVATION")
    order.orc.orc_1 = "RE"
    order.orc.orc_2 = f"PO-{control_id}"
    order.orc.orc_3 = f"FO-{control_id}"
    order.obr.obr_1 = "1"
    order.obr.obr_2 = f"PO-{control_id}"
    order.obr.obr_3 = f"FO-{control_id}"
    order.obr.obr_4 = "GLU^葡萄糖^L"
    order.obr.obr_7 = "20261124080000+0800"
    order.obr.obr_22 = "20261124083000+0800"
    order.obr.obr_25 = "F"
    observation = order.add_group("ORU_R01_OBSERVATION")
    observation.obx.obx_1 = "1"
    observation.obx.obx_2 = "NM"
    observation.obx.obx_3 = "GLU^葡萄糖^L"
    observation.obx.obx_5 = value
    observation.obx.obx_6 = "mmol/L^^UCUM"
    observation.obx.obx_7 = "3.9-6.1"
    observation.obx.obx_8 = "H"
    observation.obx.obx_11 = "F"
    return m.to_er7()


def unframe(reply):
    return reply.strip(b"\x0b\x1c\r").decode("utf-8")


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    seen = {}
    with MLLPClient(host, port) as client:
        good = oru("EXT-1", "EXT-P1", "11.2")
        for label, text, want in [
            ("stored", good, "AA"),
            # Not an ORU^R01: rejected, the connection goes on.
            ("adt", good.replace("ORU^R01^ORU_R01", "ADT^A01^ADT_A01").replace("EXT-1", "EXT-2", 1), "AR"),
            # The same message again (its ACK was lost): acknowledged, not stored twice.
            ("repeat", good, "AA"),
            # The same control ID with other content: an error.
            ("reused-id", oru("EXT-1", "EXT-P9", "5.0"), "AE"),
        ]:
            ack_text = unframe(client.send_message(text))
            ack = hl7.parse(ack_text)
            msa = ack.segment("MSA")
            code, control = str(msa[1]), str(msa[2])
            check(code == want, f"{label}: MSA-1 {code}, expected {want}: {ack_text!r}")
            check(control == str(hl7.parse(text).segment("MSH")[10]), f"{label}: MSA-2 {control}")
            if want != "AA":
                check(any(str(s[0]) == "ERR" for s in ack), f"{label}: no ERR segment")
            # hl7apy reads the ACK as well.
            parsed = parse_message(ack_text.replace("\n", "\r"))
            check(parsed.msh.msh_9.to_er7().startswith("ACK"), f"{label}: hl7apy sees {parsed.msh.msh_9.to_er7()}")
            seen[label] = code
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
