"""Transfer between sites without a network: site identity and peers (``site``), the signed, encrypted
packet (``packet``), export (``export``), the import job with de-duplication (``importer``) and the
per-peer status (``status``)."""
