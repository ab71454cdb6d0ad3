"""robustvit_mm: RobustViT (Chefer, Schwartz, Wolf, NeurIPS 2022) as an mmpretrain plugin."""
from setuptools import find_packages, setup

setup(
    name='robustvit_mm',
    version='0.1.0',
    description='Optimizing relevance maps of Vision Transformers improves robustness: '
                'an mmpretrain plugin',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    python_requires='>=3.9',
    packages=find_packages(include=['robustvit_mm', 'robustvit_mm.*']),
    package_data={'robustvit_mm': ['datasets/data/*.json', 'models/data/*.json',
                                  'experiments/data/*.json']},
    # Lower bounds only; requirements.txt pins the set that is known to work.
    install_requires=[
        'torch>=2.1', 'torchvision', 'timm>=1.0', 'mmengine>=0.10', 'mmcv-lite>=2.0',
        'mmpretrain>=1.2', 'opencv-python', 'h5py', 'scipy', 'scikit-learn', 'matplotlib',
        'setuptools<82',
    ],
    extras_require={'tests': ['pytest']},
    license='MIT',
)
