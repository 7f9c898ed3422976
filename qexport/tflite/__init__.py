"""TFLite int8 profile and `.tflite` writer (README "TFLite")."""
