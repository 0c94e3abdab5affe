"""Where the service keeps the photos added at run time (POST /landmarks/{id}/images).

They live in INDEX_DIR/photos/<landmark_id>/ and their source keys start with `upload/`, so a
rebuild of the index from a gallery folder (`landmarks index build`) leaves them alone: the command
line passes UPLOAD_PREFIX to the engine's build as a prefix to keep. Standard library only.
"""

UPLOADS_DIR = "photos"
UPLOAD_PREFIX = "upload/"
