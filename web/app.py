"""Landmark Search web page. Run with `streamlit run web/app.py`.

Talks to the API only over HTTP (LANDMARKS_API_URL, default http://127.0.0.1:8000); the theme and
server settings live in web/.streamlit/config.toml, which Streamlit reads next to this script.
"""

import streamlit as st

st.set_page_config(page_title="Landmark Search", page_icon="🏛️", layout="centered")

page = st.navigation(
    [
        st.Page("views/search.py", title="Search", icon=":material/image_search:", default=True),
        st.Page("views/gallery.py", title="Gallery", icon=":material/photo_library:"),
        st.Page("views/add_landmark.py", title="Add landmark", icon=":material/add_location_alt:"),
    ],
    position="top",
)
page.run()
