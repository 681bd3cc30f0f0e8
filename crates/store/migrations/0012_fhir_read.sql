-- Version 12: the FHIR read API for lab results (/fhir/r4). No new tables: published panels are read
-- from lab_panels (state released / auto_released, version 11) and lab_results. Indexes for what a
-- member hospital searches by that version 9 did not cover:
-- an identifier without its system (Patient?identifier=value, patient.identifier=value),
CREATE INDEX lab_panels_by_patient_id ON lab_panels (patient_id, issuer);
-- an order number without its sender (DiagnosticReport?identifier=value),
CREATE INDEX lab_panels_by_filler_order ON lab_panels (filler_order);
CREATE INDEX lab_panels_by_placer_order ON lab_panels (placer_order);
-- and a result code (Observation?code=, DiagnosticReport?code= on results) is matched per panel
-- through lab_results' primary key (panel_id, seq); LOINC across panels uses lab_results_by_loinc.
-- Patient/{id} (a prefix of the patient key) is a range on lab_panels_by_patient (patient_key, ...).
