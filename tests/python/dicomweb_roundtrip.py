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

    # QIDO-RS: search by patient, with wildcard and includefield; then series and instances.
    first = datasets[0]
    studies = client.search_for_studies(
        search_filters={"PatientID": first.PatientID, "PatientName": str(first.PatientName)[:3] + "*"},
        fields=["StudyDescription"],
    )
    uids = {s["0020000D"]["Value"][0] for s in studies}
    assert first.StudyInstanceUID in uids, f"search did not find the study: {uids}"
    none = client.search_for_studies(search_filters={"PatientID": "NO-SUCH-PATIENT"})
    assert none == [], f"a search for nobody found {none}"
    series = client.search_for_series(study_instance_uid=first.StudyInstanceUID)
    assert any(s["0020000E"]["Value"][0] == first.SeriesInstanceUID for s in series)
    instances = client.search_for_instances(
        study_instance_uid=first.StudyInstanceUID, series_instance_uid=first.SeriesInstanceUID
    )
    want_series = sorted(d.SOPInstanceUID for d in datasets if d.SeriesInstanceUID == first.SeriesInstanceUID)
    assert sorted(i["00080018"]["Value"][0] for i in instances) == want_series

    # WADO-RS metadata (from the catalog), series retrieve, frames and bulk data.
    metadata = client.retrieve_study_metadata(study_instance_uid=first.StudyInstanceUID)
    assert sorted(m["00080018"]["Value"][0] for m in metadata) == sorted(
        d.SOPInstanceUID for d in datasets if d.StudyInstanceUID == first.StudyInstanceUID
    )
    assert all("BulkDataURI" in m["7FE00010"] for m in metadata), "pixel data is not a bulk reference"
    got_series = client.retrieve_series(
        study_instance_uid=first.StudyInstanceUID, series_instance_uid=first.SeriesInstanceUID
    )
    assert sorted(d.SOPInstanceUID for d in got_series) == want_series
    frames = client.retrieve_instance_frames(
        study_instance_uid=first.StudyInstanceUID,
        series_instance_uid=first.SeriesInstanceUID,
        sop_instance_uid=first.SOPInstanceUID,
        frame_numbers=[1],
    )
    assert frames[0] == first.PixelData, "frame 1 differs from the stored pixel data"
    uri = [m for m in metadata if m["00080018"]["Value"][0] == first.SOPInstanceUID][0]["7FE00010"]["BulkDataURI"]
    bulk = client.retrieve_bulkdata(uri)
    assert bulk[0] == first.PixelData, "bulk data differs from the stored pixel data"

    print(f"dicomweb-client: stored {len(stored)} and read back {len(datasets)} instances + study of {len(study)}; "
          f"searched {len(studies)} studies, {len(series)} series, {len(instances)} instances; metadata, frames, bulk data")
    return 0


if __name__ == "__main__":
    sys.exit(main())
