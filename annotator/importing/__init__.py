"""Importing a dataset from a folder: images + a manifest CSV, or the CBIS-DDSM layout.

The write entry point is ``annotator.services.datasets.dataset_import``; this package holds its steps,
one module each. Import a name from the module that holds it (nothing is re-exported here):

    records      the intermediate records (ImageSpec, FindingSpec, RowError) and the vocabulary their fields take
    csv_reading  reading the CSVs of both layouts: normalised headers, the file's own line numbers, cell values
    manifest     the manifest layout; its columns are documented there
    cbis_ddsm    the CBIS-DDSM layout: description CSVs and the DICOM tree as TCIA ships it
    checks       phase 1's checks common to both layouts, decoding every image and mask once
    threads      the few threads both phases decode and encode images on
    storing      phase 2: the media files, then all rows in one transaction
"""
