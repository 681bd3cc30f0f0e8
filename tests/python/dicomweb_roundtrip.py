"""Stores and reads back through the hub with dicomweb-client, a DICOMweb client nobody here wrote.

Usage: dicomweb_roundtrip.py BASE_URL TOKEN FILE...
Exits non-zero with a message on the first mismatch.
"""
import hashlib
import sys

import pydicom
from dicomweb_client.api import DICOMwebClient


def main() -> int:
    base, token, files = sys.argv[1], sys.argv[2], sys.argv[3:]
    client = DICOMwebClient(url=f"{base}/dicomweb", headers={"Authorization": f"Bearer {token}"})
    datasets = [pydicom.dcmread(f) for f in files]

    response = client.store_instances(datasets=datasets)
    stored = [item.ReferencedSOPInstanceUID for item in response.ReferencedSOPSequence]
    expected = [ds.SOPInstanceUID for ds in datasets]
    assert sorted(stored) == sorted(expected), f"stored {stored}, expected {expected}"
    assert "FailedSOPSequence" not in response, f"failures: {response.FailedSOPSequence}"

    # Storing again is a no-op success (same bytes).
    again = client.store_instances(datasets=datasets)
    assert "FailedSOPSequence" not in again, "a repeated store failed"

    for ds in datasets:
        back = client.retrieve_instance(
            study_instance_uid=ds.StudyInstanceUID,
            series_instance_uid=ds.SeriesInstanceUID,
            sop_instance_uid=ds.SOPInstanceUID,
        )
        assert back.SOPInstanceUID == ds.SOPInstanceUID
        assert back.PatientID == ds.PatientID
        assert hashlib.sha256(back.PixelData).digest() == hashlib.sha256(ds.PixelData).digest(), "pixel data changed"

    study = client.retrieve_study(study_instance_uid=datasets[0].StudyInstanceUID)
    got = sorted(d.SOPInstanceUID for d in study)
    want = sorted(d.SOPInstanceUID for d in datasets if d.StudyInstanceUID == datasets[0].StudyInstanceUID)
    assert got == want, f"study retrieve returned {got}, expected {want}"

    print(f"dicomweb-client: stored {len(stored)} and read back {len(datasets)} instances + study of {len(study)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
