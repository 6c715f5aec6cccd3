"""Model directories, read and written (the student's own export is ``diversedistill.export``):
export entries for models the library did not build (``export_generic``), Hugging Face
models loaded as weights only (``hub``) and which code loading a directory may run
(``model_code``)."""
