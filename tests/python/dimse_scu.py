"""pynetdicom as an SCU against the hub's DIMSE listener (tests/dimse_external.rs drives it).

usage: dimse_scu.py HOST PORT CALLING_AE CALLED_AE FILE...

C-ECHO, then C-STORE of each file on one association, then a Study Root C-FIND for the first
file's study and a C-GET of it. Prints one JSON object with the statuses and what came back;
exits non-zero when a step fails.
"""

import json
import sys

from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    Verification,
)


def main() -> int:
    host, port, calling, called = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    files = sys.argv[5:]
    out = {"echo": None, "store": [], "find": [], "get_status": None, "got": []}

    datasets = [dcmread(f) for f in files]
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    for ds in datasets:
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate(host, port, ae_title=called)
    if not assoc.is_established:
        print(json.dumps({"error": "store association not established"}))
        return 1
    out["echo"] = assoc.send_c_echo().Status
    for ds in datasets:
        st = assoc.send_c_store(ds)
        out["store"].append(st.Status if st else None)
    assoc.release()

    study = str(datasets[0].StudyInstanceUID)
    ae = AE(ae_title=calling)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    classes = sorted({str(ds.SOPClassUID) for ds in datasets})
    for uid in classes:
        ae.add_requested_context(uid)
    got = []

    def on_store(event):
        got.append(str(event.dataset.SOPInstanceUID))
        return 0x0000

    roles = [build_role(uid, scp_role=True) for uid in classes]
    assoc = ae.associate(
        host, port, ae_title=called, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    if not assoc.is_established:
        print(json.dumps({"error": "query association not established"}))
        return 1
    q = Dataset()
    q.QueryRetrieveLevel = "STUDY"
    q.StudyInstanceUID = study
    q.PatientID = ""
    q.NumberOfStudyRelatedInstances = ""
    for status, identifier in assoc.send_c_find(q, StudyRootQueryRetrieveInformationModelFind):
        if status and status.Status in (0xFF00, 0xFF01) and identifier is not None:
            out["find"].append(
                {
                    "study": str(identifier.StudyInstanceUID),
                    "instances": int(identifier.NumberOfStudyRelatedInstances),
                }
            )
    g = Dataset()
    g.QueryRetrieveLevel = "STUDY"
    g.StudyInstanceUID = study
    for status, _ in assoc.send_c_get(g, StudyRootQueryRetrieveInformationModelGet):
        if status:
            out["get_status"] = status.Status
    assoc.release()
    out["got"] = sorted(got)
    print(json.dumps(out))
    ok = out["echo"] == 0 and all(s == 0 for s in out["store"]) and out["get_status"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
